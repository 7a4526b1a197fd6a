"""Tests for strangler.diff: the sans-IO shadow comparison, driven by byte fixtures and tables."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strangler.diff import (
    NOTE_BODY_TRUNCATED,
    PREVIEW_CHARS,
    CapturedResponse,
    ComparePolicy,
    Diff,
    Difference,
    NoiseModel,
    compare,
)

FIXTURES = Path(__file__).parent / "fixtures" / "diff"
JSON = (("Content-Type", "application/json"),)
HTML = (("Content-Type", "text/html; charset=utf-8"),)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def response(
    body: object = b"",
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = JSON,
    truncated: bool = False,
) -> CapturedResponse:
    """A captured response; a non-bytes body is encoded as JSON."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return CapturedResponse(status=status, headers=headers, body=raw, truncated=truncated)


def found(diff: Diff) -> list[tuple[str, str]]:
    return [(d.field, d.kind) for d in diff.differences]


@dataclass(frozen=True)
class Case:
    id: str
    primary: CapturedResponse
    shadow: CapturedResponse
    expected: list[tuple[str, str]]
    policy: ComparePolicy = field(default_factory=ComparePolicy)


UNORDERED = ComparePolicy(array_order="ignore")

CASES = [
    Case("identical", response({"a": 1, "b": [1, 2]}), response({"a": 1, "b": [1, 2]}), []),
    Case("reordered-keys-match", response(b'{"a":1,"b":2}'), response(b'{"b":2,"a":1}'), []),
    Case("int-equals-float", response(b'{"n":1}'), response(b'{"n":1.0}'), []),
    Case("big-int-equals-float", response(b"[100000000000000000000]"), response(b"[1e20]"), []),
    Case("true-is-not-1", response(b'{"n":true}'), response(b'{"n":1}'), [("$.n", "type")]),
    Case("false-is-not-0", response(b'{"n":0}'), response(b'{"n":false}'), [("$.n", "type")]),
    Case("null-is-not-0", response(b'{"n":null}'), response(b'{"n":0}'), [("$.n", "type")]),
    Case("string-is-not-number", response(b'{"n":"1"}'), response(b'{"n":1}'), [("$.n", "type")]),
    Case("root-type-change", response(b"{}"), response(b"[]"), [("$", "type")]),
    Case(
        "scalar-changed",
        response({"a": {"b": 1}}),
        response({"a": {"b": 2}}),
        [("$.a.b", "changed")],
    ),
    Case(
        "missing-and-extra-keys",
        response({"keep": 1, "gone": 2}),
        response({"keep": 1, "new": 3}),
        [("$.gone", "missing_in_shadow"), ("$.new", "extra_in_shadow")],
    ),
    Case(
        "non-identifier-key-bracketed",
        response({"a b": 1, "x-y": [0]}),
        response({"a b": 2, "x-y": [1]}),
        [('$["a b"]', "changed"), ('$["x-y"][0]', "changed")],
    ),
    Case(
        "strict-order-reports-indexes",
        response({"tags": ["gift", "priority"]}),
        response({"tags": ["priority", "gift"]}),
        [("$.tags[0]", "changed"), ("$.tags[1]", "changed")],
    ),
    Case(
        "strict-array-shorter-and-longer",
        response({"a": [1, 2, 3], "b": [1]}),
        response({"a": [1], "b": [1, 2]}),
        [
            ("$.a[1]", "missing_in_shadow"),
            ("$.a[2]", "missing_in_shadow"),
            ("$.b[1]", "extra_in_shadow"),
        ],
    ),
    Case(
        "ignore-order-reordered-matches",
        response({"tags": ["gift", "priority"]}),
        response({"tags": ["priority", "gift"]}),
        [],
        UNORDERED,
    ),
    Case(
        "strict-order-nested-arrays-differ",
        response({"grid": [[1, 2], [3, 4]]}),
        response({"grid": [[4, 3], [2, 1]]}),
        [
            ("$.grid[0][0]", "changed"),
            ("$.grid[0][1]", "changed"),
            ("$.grid[1][0]", "changed"),
            ("$.grid[1][1]", "changed"),
        ],
    ),
    Case(
        "ignore-order-nested-arrays-match",
        response({"grid": [[1, 2], [3, 4]]}),
        response({"grid": [[4, 3], [2, 1]]}),
        [],
        UNORDERED,
    ),
    Case(
        "ignore-order-changed-element-paired-by-closeness",
        response({"items": [{"id": 1, "p": 5}, {"id": 2, "p": 7}, {"id": 3, "p": 9}]}),
        response({"items": [{"id": 3, "p": 9}, {"id": 2, "p": 8}, {"id": 1, "p": 5}]}),
        [("$.items[1].p", "changed")],
        UNORDERED,
    ),
    Case(
        "ignore-order-two-changed-elements-pair-correctly",
        response([{"id": 1, "p": 5, "q": 1}, {"id": 2, "p": 7, "q": 2}]),
        response([{"id": 2, "p": 7, "q": 3}, {"id": 1, "p": 6, "q": 1}]),
        [("$[0].p", "changed"), ("$[1].q", "changed")],
        UNORDERED,
    ),
    Case(
        "ignore-order-element-missing",
        response([1, 2, 3]),
        response([3, 1]),
        [("$[1]", "missing_in_shadow")],
        UNORDERED,
    ),
    Case(
        "ignore-order-element-extra",
        response([1, 2]),
        response([2, 1, 1]),
        [("$[2]", "extra_in_shadow")],
        UNORDERED,
    ),
    Case(
        "ignore-order-counts-duplicates",
        response([1, 1, 2]),
        response([1, 2, 2]),
        [("$[1]", "changed")],
        UNORDERED,
    ),
    Case(
        "ignore-order-bool-and-number-differ",
        response([True, 1]),
        response([1, 1]),
        [("$[0]", "type")],
        UNORDERED,
    ),
    Case(
        "ignored-paths-generated-at-and-item-updated-at",
        response(fixture("order_monolith.json")),
        response(fixture("order_service.json")),
        [
            ("$.items[1].unit_price", "changed"),
            ("$.meta.request_id", "changed"),
            ("$.meta.served_by", "changed"),
        ],
        ComparePolicy(ignore_paths=("$.generated_at", "$.items[*].updated_at")),
    ),
    Case(
        "ignored-path-star-covers-subtree",
        response({"meta": {"trace": {"id": 1}, "host": "a"}, "v": 1}),
        response({"meta": {"trace": {"id": 2}, "extra": True}, "v": 1}),
        [],
        ComparePolicy(ignore_paths=("$.meta.*",)),
    ),
    Case(
        "ignored-key-missing-on-one-side-is-not-reported",
        response({"generated_at": "now", "v": 1}),
        response({"v": 1}),
        [],
        ComparePolicy(ignore_paths=("$.generated_at",)),
    ),
    Case(
        "ignored-root-skips-body",
        response({"v": 1}),
        response({"v": 2}),
        [],
        ComparePolicy(ignore_paths=("$",)),
    ),
    Case(
        "ignore-order-with-ignored-field-inside-elements",
        response({"items": [{"id": 1, "at": "t1"}, {"id": 2, "at": "t2"}]}),
        response({"items": [{"id": 2, "at": "t9"}, {"id": 1}]}),
        [],
        ComparePolicy(array_order="ignore", ignore_paths=("$.items[*].at",)),
    ),
    Case(
        "compared-header-differs",
        response({}, headers=(("Content-Type", "application/json"), ("X-Api-Version", "1"))),
        response({}, headers=(("content-type", "application/json"), ("x-api-version", "2"))),
        [("header:x-api-version", "changed")],
        ComparePolicy(headers=frozenset({"content-type", "X-Api-Version"})),
    ),
    Case(
        "header-names-compared-case-insensitively",
        response({}, headers=(("CONTENT-TYPE", "application/json"),)),
        response({}, headers=(("content-type", "application/json"),)),
        [],
    ),
    Case(
        "header-missing-and-extra",
        response({}, headers=(*JSON, ("Cache-Control", "no-store"))),
        response({}, headers=(*JSON, ("ETag", '"abc"'))),
        [("header:cache-control", "missing_in_shadow"), ("header:etag", "extra_in_shadow")],
        ComparePolicy(headers=frozenset({"content-type", "cache-control", "etag"})),
    ),
    Case(
        "ignored-header-wins-over-compared",
        response({}, headers=(*JSON, ("Date", "Thu, 02 May 2024 10:14:07 GMT"))),
        response({}, headers=(*JSON, ("Date", "Thu, 02 May 2024 10:14:08 GMT"))),
        [],
        ComparePolicy(
            headers=frozenset({"content-type", "date"}), ignore_headers=frozenset({"date"})
        ),
    ),
    Case(
        "content-type-charset-difference-is-a-header-difference",
        response({"v": 1}, headers=(("Content-Type", "application/json"),)),
        response({"v": 1}, headers=(("Content-Type", "application/json; charset=utf-8"),)),
        [("header:content-type", "changed")],
    ),
    Case(
        "status-differs",
        response({}, status=200),
        response({}, status=500),
        [("status", "changed")],
    ),
    Case(
        "status-not-compared",
        response({}, status=200),
        response({}, status=201),
        [],
        ComparePolicy(compare_status=False),
    ),
    Case(
        "non-json-bytes-equal",
        response(fixture("legacy_page.html"), headers=HTML),
        response(fixture("legacy_page.html"), headers=HTML),
        [],
    ),
    Case(
        "non-json-bytes-differ",
        response(b"<p>paid</p>", headers=HTML),
        response(b"<p>Paid</p>", headers=HTML),
        [("body", "changed")],
    ),
    Case(
        "json-vs-non-json",
        response(fixture("order_monolith.json")),
        response(fixture("legacy_page.html"), headers=HTML),
        [("header:content-type", "changed"), ("body", "changed")],
    ),
    Case(
        "json-types-but-no-content-type-compares-bytes",
        response(b'{"a":1}', headers=()),
        response(b'{"a": 1}', headers=()),
        [("body", "changed")],
        ComparePolicy(headers=frozenset()),
    ),
    Case(
        "invalid-json-on-one-side",
        response(fixture("order_monolith.json")),
        response(fixture("error_not_json.txt")),
        [("body", "changed")],
    ),
    Case(
        "invalid-json-both-sides-equal-bytes",
        response(fixture("error_not_json.txt")),
        response(fixture("error_not_json.txt")),
        [],
    ),
    Case(
        "nan-is-not-json",
        response(b'{"v": NaN}'),
        response(b'{"v": 1}'),
        [("body", "changed")],
    ),
    Case(
        "problem-json-compared-structurally",
        response(
            b'{"title":"Not found","status":404}',
            headers=(("Content-Type", "application/problem+json"),),
        ),
        response(
            b'{"status":404,"title":"Not found"}',
            headers=(("Content-Type", "application/problem+json"),),
        ),
        [],
    ),
    Case(
        "empty-json-bodies-match",
        response(b"", status=204),
        response(b"", status=204),
        [],
    ),
    Case(
        "utf8-json-compared-as-text",
        response('{"name": "Jo\u00e3o"}'.encode()),
        response(b'{"name": "Jo\\u00e3o"}'),
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_compare(case: Case) -> None:
    diff = compare(case.primary, case.shadow, case.policy)
    assert found(diff) == case.expected
    assert diff.matched == (not case.expected)
    assert diff.noise_ignored == ()


def test_fixture_order_differs_only_in_price_and_volatile_fields() -> None:
    diff = compare(
        response(fixture("order_monolith.json")),
        response(fixture("order_service.json")),
        ComparePolicy(),
    )
    assert found(diff) == [
        ("$.items[0].updated_at", "changed"),
        ("$.items[1].unit_price", "changed"),
        ("$.items[1].updated_at", "changed"),
        ("$.items[2].updated_at", "changed"),
        ("$.generated_at", "changed"),
        ("$.meta.request_id", "changed"),
        ("$.meta.served_by", "changed"),
    ]
    price = diff.differences[1]
    assert price == Difference("$.items[1].unit_price", 1.2, 1.25, "changed")


def test_fixture_items_reordered_match_only_when_order_is_ignored() -> None:
    primary = response(fixture("order_monolith.json"))
    shadow = response(fixture("order_service_items_reordered.json"))
    ignore = ("$.items[*].updated_at",)
    strict = compare(primary, shadow, ComparePolicy(ignore_paths=ignore))
    unordered = compare(primary, shadow, ComparePolicy(ignore_paths=ignore, array_order="ignore"))
    assert not strict.matched
    assert "$.items[0].sku" in [d.field for d in strict.differences]
    assert unordered.matched


def test_truncated_body_is_not_compared_but_status_is() -> None:
    primary = response({"v": 1}, truncated=True)
    shadow = response({"v": 2}, status=502)
    diff = compare(primary, shadow, ComparePolicy())
    assert found(diff) == [("status", "changed")]
    assert diff.notes == (NOTE_BODY_TRUNCATED,)
    both = compare(
        response(b"abc", truncated=True), response(b"xyz", truncated=True), ComparePolicy()
    )
    assert both.matched
    assert both.notes == (NOTE_BODY_TRUNCATED,)


def test_difference_list_is_capped_with_a_note() -> None:
    diff = compare(
        response(list(range(50))), response(list(range(1, 51))), ComparePolicy(max_differences=5)
    )
    assert len(diff.differences) == 5
    assert diff.notes == ("more than 5 differences; the rest are not listed",)


def test_values_are_short_and_json_able() -> None:
    long_text = "x" * 1000
    diff = compare(
        response({"s": long_text, "o": {"k": [1, 2]}}),
        response({"s": long_text + "y", "o": None}),
        ComparePolicy(),
    )
    text_difference, object_difference = diff.differences
    assert isinstance(text_difference.primary, str)
    assert len(text_difference.primary) == PREVIEW_CHARS + 1
    assert text_difference.primary.endswith("…")
    assert object_difference == Difference("$.o", '{"k":[1,2]}', None, "type")
    json.dumps([(d.field, d.primary, d.shadow, d.kind) for d in diff.differences])


def test_body_difference_previews_bytes() -> None:
    diff = compare(
        response(b"\xff" + b"a" * 5000, headers=HTML), response(b"b", headers=HTML), ComparePolicy()
    )
    (body,) = diff.differences
    assert isinstance(body.primary, str)
    assert body.primary.startswith("\ufffdaaa")
    assert body.primary.endswith("…")
    assert body.shadow == "b"


def test_deep_nesting_does_not_raise() -> None:
    deep_primary = b"[" * 700 + b"1" + b"]" * 700
    deep_shadow = b"[" * 700 + b"2" + b"]" * 700
    diff = compare(response(deep_primary), response(deep_shadow), ComparePolicy())
    assert not diff.matched
    very_deep = b"[" * 100_000 + b"]" * 100_000
    assert compare(response(very_deep), response(very_deep), ComparePolicy()).matched


def catalogue(count: int, *, price_bump_at: int | None = None) -> list[dict[str, object]]:
    products: list[dict[str, object]] = []
    for n in range(count):
        price = 10 + n + (1 if n == price_bump_at else 0)
        products.append(
            {
                "sku": f"SKU-{n:05d}",
                "name": f"Product number {n}",
                "price": price,
                "stock": {"warehouse": "LIS-1", "available": n % 7},
                "tags": ["catalogue", f"group-{n % 5}"],
            }
        )
    return products


def test_ten_kilobyte_body_compares_sanely() -> None:
    primary = catalogue(80)
    body = json.dumps({"products": primary}).encode()
    assert len(body) > 10_000
    shuffled = list(reversed(catalogue(80, price_bump_at=40)))
    strict = compare(
        response(body), response({"products": catalogue(80, price_bump_at=40)}), ComparePolicy()
    )
    assert found(strict) == [("$.products[40].price", "changed")]
    unordered = compare(response(body), response({"products": shuffled}), UNORDERED)
    assert found(unordered) == [("$.products[40].price", "changed")]
    assert compare(response(body), response(body), UNORDERED).matched


# Noise, as Diffy learns it: two primaries answering the same request.


def test_noise_learned_from_two_primaries_is_set_aside() -> None:
    noise = NoiseModel()
    policy = ComparePolicy()
    noise.learn(
        response(fixture("order_monolith.json")),
        response(fixture("order_monolith_replay.json")),
        policy,
    )
    assert noise.noisy_fields() == (
        "$.generated_at",
        "$.items[*].updated_at",
        "$.meta.request_id",
        "$.meta.served_by",
    )
    assert noise.is_noise("$.items[7].updated_at")
    assert noise.is_noise("$.items[*].updated_at")
    assert not noise.is_noise("$.items[1].unit_price")
    diff = compare(
        response(fixture("order_monolith.json")),
        response(fixture("order_service.json")),
        policy,
        noise,
    )
    assert found(diff) == [("$.items[1].unit_price", "changed")]
    assert diff.noise_ignored == (
        "$.items[*].updated_at",
        "$.generated_at",
        "$.meta.request_id",
        "$.meta.served_by",
    )


def test_noise_counts_once_per_learning_and_headers_can_be_noise() -> None:
    noise = NoiseModel()
    policy = ComparePolicy(headers=frozenset({"content-type", "date"}))
    for second in range(3):
        noise.learn(
            response([{"at": 1}, {"at": 1}], headers=(*JSON, ("Date", "10:00:00"))),
            response([{"at": 2}, {"at": 3}], headers=(*JSON, ("Date", f"10:00:0{second + 1}"))),
            policy,
        )
    assert noise.counts() == {"header:date": 3, "$[*].at": 3}
    diff = compare(
        response({}, headers=(*JSON, ("Date", "a"))),
        response({}, headers=(*JSON, ("Date", "b"))),
        policy,
        noise,
    )
    assert diff.matched
    assert diff.noise_ignored == ("header:date",)


def test_noise_pairs_unordered_elements_despite_noisy_fields() -> None:
    noise = NoiseModel()
    noise.learn(response([{"id": 1, "at": "t1"}]), response([{"id": 1, "at": "t2"}]), UNORDERED)
    diff = compare(
        response([{"id": 1, "at": "t1"}, {"id": 2, "at": "t1"}]),
        response([{"id": 2, "at": "t5"}, {"id": 1, "at": "t6"}]),
        UNORDERED,
        noise,
    )
    assert diff.matched
    assert diff.noise_ignored == ("$[*].at",)


def test_noise_model_is_bounded() -> None:
    noise = NoiseModel(max_fields=3)
    noise.learn(
        response({f"k{n}": n for n in range(5)}),
        response({f"k{n}": -n - 1 for n in range(5)}),
        ComparePolicy(),
    )
    assert noise.noisy_fields() == ("$.k0", "$.k1", "$.k2")
    assert noise.dropped == 2


def test_noise_does_not_learn_from_matching_primaries() -> None:
    noise = NoiseModel()
    noise.learn(response({"v": 1}), response({"v": 1}), ComparePolicy())
    assert noise.noisy_fields() == ()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"array_order": "sorted"}, "array_order must be one of strict, ignore (got 'sorted')"),
        (
            {"ignore_paths": ("$.ok", "$.items[x]")},
            "ignore_paths[1]: invalid JSON path '$.items[x]'",
        ),
        ({"ignore_paths": "$.generated_at"}, "ignore_paths must be a list of paths"),
        ({"max_differences": 0}, "max_differences must be at least 1"),
    ],
    ids=["unknown-array-order", "bad-ignore-path-located", "bare-string-paths", "zero-cap"],
)
def test_policy_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        ComparePolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_normalises_header_names() -> None:
    policy = ComparePolicy(
        headers=frozenset({"Content-Type", " ETag "}), ignore_headers=frozenset({"ETAG"})
    )
    assert policy.headers == frozenset({"content-type", "etag"})
    assert policy.ignore_headers == frozenset({"etag"})
    assert policy == ComparePolicy(
        headers=frozenset({"content-type", "etag"}), ignore_headers=frozenset({"etag"})
    )
    assert hash(policy) == hash(
        ComparePolicy(
            headers=frozenset({"content-type", "etag"}), ignore_headers=frozenset({"etag"})
        )
    )
