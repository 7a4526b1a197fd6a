"""Tests for strangler.jsonpath: the path subset used by shadow-diff ignore rules."""

from __future__ import annotations

import pytest

from strangler.jsonpath import (
    ANY_INDEX,
    ANY_KEY,
    Segment,
    compile_path,
    format_path,
    generalise,
    generalise_field,
)

PARSE_CASES: list[tuple[str, str, tuple[Segment, ...], str]] = [
    ("root", "$", (), "$"),
    ("dotted-key", "$.generated_at", ("generated_at",), "$.generated_at"),
    ("nested-keys", "$.meta.request_id", ("meta", "request_id"), "$.meta.request_id"),
    ("index", "$.items[2].price", ("items", 2, "price"), "$.items[2].price"),
    (
        "any-index",
        "$.items[*].updated_at",
        ("items", ANY_INDEX, "updated_at"),
        "$.items[*].updated_at",
    ),
    ("any-key", "$.meta.*", ("meta", ANY_KEY), "$.meta.*"),
    ("bracket-key-with-space", '$["a b"]', ("a b",), '$["a b"]'),
    ("bracket-identifier-canonicalised", '$["price"]', ("price",), "$.price"),
    ("bracket-escapes", '$["say \\"hi\\""]', ('say "hi"',), '$["say \\"hi\\""]'),
    ("bracket-star-is-a-literal-key", '$["*"]', ("*",), '$["*"]'),
    ("bracket-digits-are-a-key", '$["0"]', ("0",), '$["0"]'),
    ("unicode-key", '$["preço"]', ("preço",), '$["preço"]'),
    ("root-index", "$[0][1]", (0, 1), "$[0][1]"),
    ("underscore-and-digits", "$._v2", ("_v2",), "$._v2"),
]


@pytest.mark.parametrize(
    ("text", "segments", "canonical"),
    [case[1:] for case in PARSE_CASES],
    ids=[case[0] for case in PARSE_CASES],
)
def test_compile_path(text: str, segments: tuple[Segment, ...], canonical: str) -> None:
    compiled = compile_path(text)
    assert compiled.segments == segments
    assert compiled.text == canonical
    assert compile_path(compiled.text) == compiled


ERROR_CASES = [
    ("empty", "", "at offset 0: a path must start with '$'"),
    ("no-root", "items[0]", "at offset 0: a path must start with '$'"),
    ("trailing-dot", "$.items.", "at offset 8: expected a key name or '*' after '.'"),
    ("hyphen-needs-brackets", "$.x-y", "at offset 3: unexpected '-'"),
    ("key-starting-with-digit", "$.1st", "at offset 2: expected a key name or '*' after '.'"),
    ("unclosed-bracket", "$.items[0", "at offset 9: expected ']'"),
    ("negative-index", "$.items[-1]", "at offset 8: expected an index"),
    ("leading-zero", "$.items[01]", "at offset 9: expected ']'"),
    ("single-quoted-key", "$['a']", "at offset 2: expected an index"),
    ("unterminated-quote", '$["a', "at offset 2: unterminated or invalid quoted key"),
    ("bad-escape", '$["\\q"]', "at offset 2: unterminated or invalid quoted key"),
    ("space", "$. a", "at offset 2: expected a key name"),
    ("double-dot", "$..a", "at offset 2: expected a key name"),
    ("empty-brackets", "$[]", "at offset 2: expected an index"),
]


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_compile_path_errors_name_the_path_and_offset(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        compile_path(text)
    assert str(raised.value).startswith(f"invalid JSON path {text!r} {message}")


MATCH_CASES: list[tuple[str, str, tuple[str | int, ...], bool]] = [
    ("exact-key", "$.generated_at", ("generated_at",), True),
    ("other-key", "$.generated_at", ("generated",), False),
    ("any-index-matches-each-index", "$.items[*].updated_at", ("items", 7, "updated_at"), True),
    ("any-index-not-a-key", "$.items[*].updated_at", ("items", "7", "updated_at"), False),
    ("any-key-matches-key", "$.meta.*", ("meta", "served_by"), True),
    ("any-key-not-an-index", "$.meta.*", ("meta", 0), False),
    ("concrete-index", "$.items[2]", ("items", 2), True),
    ("other-index", "$.items[2]", ("items", 3), False),
    ("bool-is-not-an-index", "$.items[*]", ("items", True), False),
    ("bool-is-not-index-1", "$.items[1]", ("items", True), False),
    ("shorter-path-does-not-match", "$.meta.*", ("meta",), False),
    ("longer-path-does-not-match", "$.meta", ("meta", "x"), False),
    ("root-matches-root", "$", (), True),
    ("digit-key-is-not-index", '$["0"]', (0,), False),
]


@pytest.mark.parametrize(
    ("pattern", "path", "expected"), [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES]
)
def test_matches(pattern: str, path: tuple[str | int, ...], expected: bool) -> None:
    assert compile_path(pattern).matches(path) is expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((), "$"),
        (("items", 2, "price"), "$.items[2].price"),
        (("a b", "c.d", ""), '$["a b"]["c.d"][""]'),
        (("line\nbreak",), '$["line\\nbreak"]'),
        (("items", ANY_INDEX, "x", ANY_KEY), "$.items[*].x.*"),
    ],
    ids=["root", "keys-and-index", "non-identifiers", "newline-escaped", "wildcards"],
)
def test_format_path(parts: tuple[Segment, ...], expected: str) -> None:
    assert format_path(parts) == expected
    assert compile_path(expected).segments == parts


def test_generalise_turns_indexes_into_any_index() -> None:
    assert generalise(("items", 3, "updated_at")) == "$.items[*].updated_at"
    assert generalise((0, "tags", 1)) == "$[*].tags[*]"
    assert generalise(("7",)) == '$["7"]'


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("$.items[3].updated_at", "$.items[*].updated_at"),
        ("$.items[*].updated_at", "$.items[*].updated_at"),
        ('$["a[3]"][4]', '$["a[3]"][*]'),
        ("status", "status"),
        ("header:date", "header:date"),
        ("body", "body"),
        ("$.not valid", "$.not valid"),
    ],
    ids=["concrete", "already-general", "brackets-inside-key", "status", "header", "body", "bad"],
)
def test_generalise_field(field: str, expected: str) -> None:
    assert generalise_field(field) == expected
