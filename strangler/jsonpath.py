"""A small JSON path subset, for shadow-diff ignore rules and difference field names.

Role: compile the path texts users write in config (``$.generated_at``, ``$.items[*].updated_at``,
``$.meta.*``, ``$["a b"][0]``) once, match them against concrete paths the diff engine walks, and
format concrete paths back into text.

Grammar (nothing more)::

    path     := "$" segment*
    segment  := "." identifier      a key that is an identifier ([A-Za-z_][A-Za-z0-9_]*)
              | "." "*"             any key of an object
              | "[" json-string "]" any key, double-quoted with JSON escapes
              | "[" digits "]"      an array index (no sign, no leading zeros)
              | "[" "*" "]"         any index of an array

Invariants:
- A concrete path is a tuple of ``str`` (object keys) and ``int`` (array indexes); ``bool`` is
  never an index.
- ``*`` matches keys only and ``[*]`` indexes only: a rule never crosses from objects to arrays.
- A pattern matches a concrete path of exactly its own length; callers that want a rule to cover a
  whole subtree test each node on the way down (the diff engine does).
- ``format_path`` and ``compile_path`` round-trip: ``compile_path(format_path(p)).text ==
  format_path(p)``.
- Pure: no I/O, no clock. ``generalise_field`` keeps a bounded cache.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ANY_INDEX",
    "ANY_KEY",
    "ConcretePath",
    "JsonPath",
    "Segment",
    "Wildcard",
    "compile_path",
    "format_path",
    "generalise",
    "generalise_field",
]


class Wildcard(enum.Enum):
    """The two wildcard segments of a pattern."""

    ANY_KEY = "*"
    ANY_INDEX = "[*]"


ANY_KEY = Wildcard.ANY_KEY
ANY_INDEX = Wildcard.ANY_INDEX

Segment = str | int | Wildcard
ConcretePath = tuple[str | int, ...]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER_FULL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_STRING_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled pattern: ``text`` is the canonical spelling of ``segments``."""

    text: str
    segments: tuple[Segment, ...]

    def matches(self, path: Sequence[str | int]) -> bool:
        """True when the concrete ``path`` has this pattern's length and every segment fits."""
        segments = self.segments
        if len(path) != len(segments):
            return False
        for want, got in zip(segments, path, strict=True):
            if want is ANY_KEY:
                if not isinstance(got, str):
                    return False
            elif want is ANY_INDEX:
                if not _is_index(got):
                    return False
            elif type(want) is not type(got) or want != got:
                return False
        return True

    def generalised(self) -> str:
        """The pattern's text with every concrete index turned into ``[*]``."""
        return format_path(ANY_INDEX if _is_index(s) else s for s in self.segments)


def compile_path(text: str) -> JsonPath:
    """Parse ``text`` into a ``JsonPath``; raise ``ValueError`` naming the offset on bad syntax."""
    if not text.startswith("$"):
        raise _syntax_error(text, 0, "a path must start with '$'")
    segments: list[Segment] = []
    pos, end = 1, len(text)
    while pos < end:
        char = text[pos]
        if char == ".":
            pos += 1
            if text.startswith("*", pos):
                segments.append(ANY_KEY)
                pos += 1
                continue
            match = _IDENTIFIER.match(text, pos)
            if match is None:
                raise _syntax_error(
                    text,
                    pos,
                    "expected a key name or '*' after '.' "
                    '(write ["..."] for keys that are not identifiers)',
                )
            segments.append(match.group())
            pos = match.end()
        elif char == "[":
            segment, pos = _parse_bracket(text, pos + 1)
            segments.append(segment)
        else:
            raise _syntax_error(text, pos, f"unexpected {char!r}; expected '.' or '['")
    return JsonPath(text=format_path(segments), segments=tuple(segments))


def format_path(parts: Iterable[Segment]) -> str:
    """Spell a path: ``$.items[2].price``, ``$["a b"]``, ``$.meta.*``, ``$.items[*]``."""
    pieces = ["$"]
    for part in parts:
        if part is ANY_KEY:
            pieces.append(".*")
        elif part is ANY_INDEX:
            pieces.append("[*]")
        elif isinstance(part, str):
            if _IDENTIFIER_FULL.match(part):
                pieces.append("." + part)
            else:
                pieces.append("[" + json.dumps(part, ensure_ascii=False) + "]")
        else:
            pieces.append(f"[{part}]")
    return "".join(pieces)


def generalise(parts: Iterable[str | int]) -> str:
    """Spell a concrete path with every index replaced by ``[*]``: ``$.items[*].updated_at``."""
    return format_path(ANY_INDEX if _is_index(p) else p for p in parts)


@functools.lru_cache(maxsize=4096)
def generalise_field(field: str) -> str:
    """Generalise a difference field name; names that are not paths (``status``) pass through."""
    if not field.startswith("$"):
        return field
    try:
        return compile_path(field).generalised()
    except ValueError:
        return field


def _parse_bracket(text: str, pos: int) -> tuple[Segment, int]:
    """Parse what follows '[' up to and including ']'; return the segment and the next offset."""
    segment: Segment
    if text.startswith("*", pos):
        segment, pos = ANY_INDEX, pos + 1
    elif text.startswith('"', pos):
        try:
            decoded, pos = _STRING_DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            raise _syntax_error(text, pos, "unterminated or invalid quoted key") from None
        segment = decoded
    else:
        match = _INDEX.match(text, pos)
        if match is None:
            raise _syntax_error(
                text, pos, "expected an index, \"*\" or a double-quoted key after '['"
            )
        segment, pos = int(match.group()), match.end()
    if not text.startswith("]", pos):
        raise _syntax_error(text, pos, "expected ']'")
    return segment, pos + 1


def _is_index(part: object) -> bool:
    return isinstance(part, int) and not isinstance(part, bool)


def _syntax_error(text: str, pos: int, reason: str) -> ValueError:
    return ValueError(f"invalid JSON path {text!r} at offset {pos}: {reason}")
