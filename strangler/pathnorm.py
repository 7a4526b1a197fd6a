"""Request-target normalisation: one canonical path for routing and for the upstream.

Role: turn the raw request-target of a request line into a :class:`Target` whose ``path``
is used both to choose the route and, after any rewrite, as the path sent upstream. A proxy
that routes on one spelling and forwards another lets ``/api/orders/%2e%2e/admin`` reach the
orders service as ``/api/admin``; here the routed path and the forwarded path are the same
string, so that cannot happen.

Invariants of every returned ``Target.path``:

- it starts with ``/``, is pure ASCII, holds no empty segment except a trailing one (``//``
  merged), and no ``.`` or ``..`` segment (resolved as RFC 3986 ``remove_dot_segments``);
- percent-encodings of unreserved characters (ALPHA, DIGIT, ``-._~``) are decoded, every other
  percent-encoding is kept with upper-case hex digits, and characters that may not appear raw in
  a path (space, ``"``, ``<``, non-ASCII, ...) are percent-encoded, so equal resources have equal
  spellings;
- its fully decoded bytes are valid UTF-8 (overlong forms rejected) and contain no control byte,
  no ``/`` or ``\\`` smuggled as ``%2F``/``%5C``, and no ``%25`` followed by the hex of ``.``,
  ``/``, ``\\`` or NUL (which a second decoding upstream would turn into one).

Anything that cannot be brought to that form raises :class:`UnsafeTarget` with a short
machine-readable ``reason``. The query is returned byte for byte: it is never used for routing,
so only raw control bytes and ``#`` (rejected for the whole target) are checked in it.

Cost: plain ASCII origin-form paths without ``%``, ``;``, ``//`` or a segment starting with
``.`` take a fast path: one compiled pass over the bytes against a precomputed table.
The module is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["Target", "UnsafeTarget", "normalize_target"]


class UnsafeTarget(ValueError):
    """The request-target is unsafe or malformed; ``reason`` is a short machine-readable code.

    Reasons: ``empty``, ``asterisk``, ``not_origin_form``, ``bad_authority``, ``fragment``,
    ``nul``, ``control_char``, ``backslash``, ``bad_percent``, ``encoded_slash``,
    ``double_encoding``, ``bad_utf8``, ``dot_segment_param``, ``dot_segment_escape``.
    The message never echoes the target itself (it may be attacker-controlled).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"unsafe request-target: {reason}")
        self.reason = reason


class Target:
    """A normalised request-target, built once per request (a plain class: the compiled build
    makes it a native object, several times cheaper to build than a NamedTuple).

    ``path`` is routed and forwarded as is; ``query`` is the raw query without ``?`` (``b""``
    when absent, ``has_query`` tells ``/p?`` from ``/p``); ``authority`` is the lower-cased
    ``host[:port]`` of an absolute-form target, else ``None``.
    """

    __slots__ = ("_authority", "_has_query", "_path", "_query")

    def __init__(self, path: str, query: bytes, has_query: bool, authority: str | None) -> None:
        self._path = path
        self._query = query
        self._has_query = has_query
        self._authority = authority

    # Read-only (a value, like the NamedTuple it was); compiled, a property read is a C call.
    @property
    def path(self) -> str:
        return self._path

    @property
    def query(self) -> bytes:
        return self._query

    @property
    def has_query(self) -> bool:
        return self._has_query

    @property
    def authority(self) -> str | None:
        return self._authority

    def _fields(self) -> tuple[str, bytes, bool, str | None]:
        return (self.path, self.query, self.has_query, self.authority)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"Target(path={self.path!r}, query={self.query!r}, has_query={self.has_query!r}, "
            f"authority={self.authority!r})"
        )


# Fast path: "/" or non-empty segments that do not start with "." (so no "//" and no dot
# segment), made of RFC 3986 pchar characters minus "%" and ";" (path parameters), and an
# optional trailing slash; then an optional query free of control bytes and "#". Checked with
# a precomputed table (allowed bytes are 1, the others 0), one pass over the path: a fraction of
# what the equivalent regular expression costs per request.
_PLAIN: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~!$&'()*+,=:@"
_FAST_PATH_TABLE: Final = bytes(1 if byte in _PLAIN + b"./" else 0 for byte in range(256))
_FAST_QUERY_TABLE: Final = bytes(0 if byte < 0x20 or byte in b"\x7f#" else 1 for byte in range(256))
_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
_BAD_PERCENT: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_DOUBLE_ENCODED: Final = re.compile(rb"%25(?:2e|2f|5c|00)", re.IGNORECASE)
_AUTHORITY: Final = re.compile(rb"[A-Za-z0-9\-._~]+(?::[0-9]*)?|\[[0-9A-Fa-f:.]+\](?::[0-9]*)?")

_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_RAW_SEGMENT_OK: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@"
)
_ENCODED: Final = tuple(f"%{byte:02X}" for byte in range(256))
_RAW_CHAR: Final = tuple(chr(byte) for byte in range(128))


def normalize_target(raw: bytes) -> Target:
    """Normalise the raw request-target of a request line, or raise :class:`UnsafeTarget`."""
    end = _plain_path_end(raw)
    if end == len(raw):
        return Target(raw.decode("ascii"), b"", False, None)
    if end > 0:  # a plain path, then "?"
        query = raw[end + 1 :]
        if not query or _plain_query(query):
            return Target(raw[:end].decode("ascii"), query, True, None)
    return _normalize_slow(raw)


def _plain(path_bytes: bytes, query: bytes) -> bool:
    """Whether a target split at its first "?" needs no normalisation (the fast path)."""
    return _plain_path_end(path_bytes) == len(path_bytes) and (not query or _plain_query(query))


def _plain_path_end(raw: bytes) -> int:
    """Where the plain path at the start of `raw` ends (its length, or the index of its "?"),
    or -1 when the path is not plain.

    One compiled loop over the bytes: allowed characters, and no "/" followed by "/" or "."
    (cheaper than a `find` and substring tests, which are generic method calls on bytes)."""
    length = len(raw)
    if length == 0 or raw[0] != 0x2F:
        return -1
    table = _FAST_PATH_TABLE
    previous = 0x2F
    for index in range(1, length):
        byte = raw[index]
        if byte == 0x3F:  # "?"
            return index
        if not table[byte] or (previous == 0x2F and (byte == 0x2F or byte == 0x2E)):
            return -1
        previous = byte
    return length


def _plain_query(query: bytes) -> bool:
    return 0 not in query.translate(_FAST_QUERY_TABLE)


def _normalize_slow(raw: bytes) -> Target:
    if not raw:
        raise UnsafeTarget("empty")
    control = _CONTROL.search(raw)
    if control is not None:
        raise UnsafeTarget("nul" if control.group() == b"\x00" else "control_char")
    if b"#" in raw:
        raise UnsafeTarget("fragment")
    authority: str | None = None
    if raw[:1] != b"/":
        if raw == b"*":
            raise UnsafeTarget("asterisk")
        authority, raw = _split_absolute_form(raw)
    path_bytes, question, query = raw.partition(b"?")
    return Target(_normalize_path(path_bytes), query, bool(question), authority)


def _split_absolute_form(raw: bytes) -> tuple[str, bytes]:
    """Return (authority, origin-form rest) of an ``http://`` or ``https://`` target."""
    lowered_head = raw[:8].lower()
    if lowered_head.startswith(b"http://"):
        rest = raw[7:]
    elif lowered_head == b"https://":
        rest = raw[8:]
    else:
        raise UnsafeTarget("not_origin_form")
    end = len(rest)
    for delimiter in (b"/", b"?"):
        position = rest.find(delimiter)
        if position != -1 and position < end:
            end = position
    authority = rest[:end]
    # Userinfo ("user@host") is deprecated for http(s) and a classic spoofing vector.
    if _AUTHORITY.fullmatch(authority) is None:
        raise UnsafeTarget("bad_authority")
    origin = rest[end:]
    if not origin.startswith(b"/"):
        origin = b"/" + origin
    return authority.decode("ascii").lower(), origin


def _normalize_path(path_bytes: bytes) -> str:
    if b"\\" in path_bytes:
        raise UnsafeTarget("backslash")
    if b"%" in path_bytes:
        if _BAD_PERCENT.search(path_bytes) is not None:
            raise UnsafeTarget("bad_percent")
        if _DOUBLE_ENCODED.search(path_bytes) is not None:
            raise UnsafeTarget("double_encoding")
    segments = path_bytes[1:].split(b"/")
    stack: list[str] = []
    last = len(segments) - 1
    trailing_slash = False
    for number, raw_segment in enumerate(segments):
        segment = _normalize_segment(raw_segment)
        is_last = number == last
        if segment == "" or segment == ".":
            trailing_slash = is_last
        elif segment == "..":
            if not stack:
                raise UnsafeTarget("dot_segment_escape")
            stack.pop()
            trailing_slash = is_last
        else:
            stack.append(segment)
            trailing_slash = False
    if not stack:
        return "/"
    path = "/" + "/".join(stack)
    if trailing_slash:
        path += "/"
    if "%" in path and _DOUBLE_ENCODED.search(path.encode("ascii")) is not None:
        # e.g. "%25%32%65" canonicalises to "%252e": still a double-encoded dot.
        raise UnsafeTarget("double_encoding")
    return path


def _normalize_segment(raw_segment: bytes) -> str:
    """Canonical spelling of one segment; checks its decoded bytes."""
    if not raw_segment:
        return ""
    decoded = bytearray()
    out: list[str] = []
    index = 0
    length = len(raw_segment)
    while index < length:
        byte = raw_segment[index]
        if byte == 0x25:  # '%': _BAD_PERCENT guarantees two hex digits follow
            value = int(raw_segment[index + 1 : index + 3], 16)
            _check_decoded_byte(value)
            decoded.append(value)
            out.append(_RAW_CHAR[value] if value in _UNRESERVED else _ENCODED[value])
            index += 3
            continue
        decoded.append(byte)
        out.append(_RAW_CHAR[byte] if byte in _RAW_SEGMENT_OK else _ENCODED[byte])
        index += 1
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeTarget("bad_utf8") from None
    bare, semicolon, _params = text.partition(";")
    if semicolon and bare in (".", ".."):
        raise UnsafeTarget("dot_segment_param")
    return "".join(out)


def _check_decoded_byte(value: int) -> None:
    if value == 0x00:
        raise UnsafeTarget("nul")
    if value < 0x20 or value == 0x7F:
        raise UnsafeTarget("control_char")
    if value == 0x2F:
        raise UnsafeTarget("encoded_slash")
    if value == 0x5C:
        raise UnsafeTarget("backslash")
