"""The route table: which declared route owns a request, compiled once per config snapshot.

Role: :meth:`RouteTable.build` compiles an ordered list of :class:`RouteEntry` once;
:meth:`RouteTable.match` then picks, per request, the first route in declared order whose
:class:`RouteMatcher` accepts it, else the default route. The module is pure: no I/O, no clock.

Invariants:

- Paths are matched as given, and must be the normalised path of :mod:`strangler.pathnorm`, the
  same string that is forwarded upstream. Route paths and prefixes must be written in that
  normalised form too (upper-case hex in any percent-encoding).
- Prefixes are segment-aware: ``/api/orders`` matches ``/api/orders``, ``/api/orders/`` and
  ``/api/orders/7``, never ``/api/ordersX``; ``/api/orders/`` matches only paths below it;
  ``/`` matches every path.
- Declared order always wins. Prefix and exact routes are indexed in a trie of path segments;
  each trie node holds, already merged in declared order, every route that can match a path
  reaching that node (its exact routes, the prefix routes of it and its ancestors, and the
  routes without an indexable path: regex and no-path routes). ``match`` walks the trie once and
  checks only that node's candidates, so an earlier regex route still beats a later prefix one.
- ``match`` allocates nothing but the path split: results are prebuilt :class:`Match` objects.
- Conditions are checked path, host, headers, cookies, then method, so ``method_mismatch``
  means "a route wanted this request except for its method" (the caller's 405).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

__all__ = [
    "Match",
    "RequestFacts",
    "RouteEntry",
    "RouteMatcher",
    "RouteTable",
    "rewrite_path",
]

T = TypeVar("T")

Conditions = tuple[tuple[str, str | None], ...]
_Lookup = Callable[[str], str | None]


@dataclass(frozen=True)
class RouteMatcher:
    """Conditions a request must meet; an unset condition accepts everything.

    At most one of ``path_prefix``, ``path`` and ``path_regex`` may be set. ``methods`` are
    upper-case, ``hosts`` lower-case without port (``*.example.com`` matches one or more labels
    in front of ``example.com``), header and cookie names lower-case; a ``None`` value means
    "present with any value".
    """

    path_prefix: str | None = None
    path: str | None = None
    path_regex: re.Pattern[str] | None = None
    methods: frozenset[str] | None = None
    hosts: tuple[str, ...] | None = None
    headers: Conditions = ()
    cookies: Conditions = ()

    def __post_init__(self) -> None:
        path_conditions = [self.path_prefix, self.path, self.path_regex]
        if sum(condition is not None for condition in path_conditions) > 1:
            raise ValueError("set at most one of path_prefix, path and path_regex")
        for name, value in (("path_prefix", self.path_prefix), ("path", self.path)):
            if value is not None and not value.startswith("/"):
                raise ValueError(f"{name} must start with '/': {value!r}")
        if self.methods is not None and any(m != m.upper() for m in self.methods):
            raise ValueError(f"methods must be upper-case: {sorted(self.methods)}")
        if self.hosts is not None and any(h != h.lower() or _has_port(h) for h in self.hosts):
            raise ValueError(f"hosts must be lower-case and without port: {list(self.hosts)}")
        # Cookie names are case-sensitive, header names are not: only headers are folded.
        if any(name != name.lower() for name, _ in self.headers):
            raise ValueError(f"header names must be lower-case: {self.headers}")


def _has_port(host: str) -> bool:
    return "]:" in host if host.startswith("[") else ":" in host


class RequestFacts(Protocol):
    """What the data plane offers about a request; lookups are lazy."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...  # normalised
    @property
    def host(self) -> str | None: ...  # as sent, may carry ":port"

    def header(self, name: str) -> str | None: ...  # lower-case name, first value
    def cookie(self, name: str) -> str | None: ...


# RouteEntry and Match are plain classes, not generic dataclasses: mypyc cannot compile those.
class RouteEntry(Generic[T]):
    __slots__ = ("matcher", "name", "payload")

    def __init__(self, name: str, matcher: RouteMatcher, payload: T) -> None:
        self.name = name
        self.matcher = matcher
        self.payload = payload

    def __repr__(self) -> str:
        return f"RouteEntry(name={self.name!r}, matcher={self.matcher!r})"


class Match(Generic[T]):
    """Result of :meth:`RouteTable.match`.

    ``entry`` is ``None`` when nothing, not even the default, matched. ``method_mismatch`` is
    true when no declared route was chosen but one accepted everything except the method.
    ``prefix`` is the chosen route's ``path_prefix`` (for :func:`rewrite_path`).
    """

    __slots__ = ("entry", "method_mismatch", "prefix")

    def __init__(
        self, entry: RouteEntry[T] | None, method_mismatch: bool, prefix: str | None
    ) -> None:
        self.entry = entry
        self.method_mismatch = method_mismatch
        self.prefix = prefix

    def __repr__(self) -> str:
        name = None if self.entry is None else self.entry.name
        return f"Match({name!r}, method_mismatch={self.method_mismatch}, prefix={self.prefix!r})"


# Verdicts and path kinds: Final ints, constants in the compiled build (a plain module
# name costs a dictionary lookup at every use).
_OK: Final = 0
_FAIL_PATH: Final = 1
_FAIL_HOST: Final = 2
_FAIL_HEADER: Final = 3
_FAIL_COOKIE: Final = 4
_FAIL_METHOD: Final = 5
_ANY: Final = 0
_PREFIX: Final = 1
_CHILDREN: Final = 2
_EXACT: Final = 3
_REGEX: Final = 4
_REGEX_SPECIAL: Final = frozenset(".^$*+?{}[]\\|()")


def regex_directory(pattern: re.Pattern[str]) -> str | None:
    """The literal directory (``/api/orders``) every path a regex fully matches lies under, if any.

    Conservative: only a plain literal start (after an optional ``^``) counts, up to its last
    ``/``; any alternation, case-insensitive or verbose flag gives ``None``. The trie then offers
    the regex route only to paths under that directory, which are the only ones it can match.
    """
    if pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    source = pattern.pattern
    if "|" in source:
        return None
    start = 1 if source.startswith("^") else 0
    end = start
    while end < len(source) and source[end] not in _REGEX_SPECIAL:
        end += 1
    if end < len(source) and source[end] in "*+?{":
        end -= 1  # a quantifier makes the last literal character optional
    cut = source.rfind("/", start, end)
    if cut <= start or source[start] != "/":
        return None
    return source[start:cut]


def _request_host(host: str | None) -> str | None:
    """Lower-case host without port (IPv6 brackets kept) and without a trailing dot."""
    if host is None:
        return None
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.partition(":")[0].rstrip(".")


def _host_allowed(host: str, exact: frozenset[str], suffixes: tuple[str, ...]) -> bool:
    if host in exact:
        return True
    return any(host.endswith(suffix) and len(host) > len(suffix) for suffix in suffixes)


def _conditions_met(wanted: Conditions, lookup: _Lookup) -> bool:
    for name, value in wanted:
        actual = lookup(name)
        if actual is None or (value is not None and actual != value):
            return False
    return True


class _Route(Generic[T]):
    """A matcher compiled for the hot path."""

    __slots__ = (
        "base",
        "base_slash",
        "cookies",
        "entry",
        "exact_hosts",
        "found",
        "headers",
        "index",
        "index_base",
        "kind",
        "methods",
        "needs_host",
        "regex",
        "simple",
        "suffix_hosts",
    )

    def __init__(self, index: int, entry: RouteEntry[T]) -> None:
        matcher = entry.matcher
        self.index = index
        self.entry = entry
        self.found: Match[T] = Match(entry, False, matcher.path_prefix)
        self.regex = matcher.path_regex
        self.base = ""
        self.index_base: str | None = None  # a regex route's literal directory, for the trie
        if matcher.path_regex is not None:
            self.kind = _REGEX
            self.index_base = regex_directory(matcher.path_regex)
        elif matcher.path is not None:
            self.kind, self.base = _EXACT, matcher.path
        elif matcher.path_prefix is None or matcher.path_prefix == "/":
            self.kind = _ANY
        elif matcher.path_prefix.endswith("/"):
            self.kind, self.base = _CHILDREN, matcher.path_prefix[:-1]
        else:
            self.kind, self.base = _PREFIX, matcher.path_prefix
        self.base_slash = self.base + "/"
        self.methods = matcher.methods
        hosts = matcher.hosts
        self.needs_host = hosts is not None
        self.exact_hosts = frozenset(h for h in hosts or () if not h.startswith("*."))
        self.suffix_hosts = tuple(h[1:] for h in hosts or () if h.startswith("*."))
        self.headers = matcher.headers
        self.cookies = matcher.cookies
        # Whether the verdict depends on the path and method alone (RouteTable's cache).
        self.simple = not self.needs_host and not self.headers and not self.cookies

    def path_matches(self, path: str) -> bool:
        kind = self.kind
        if kind == _PREFIX:
            return path == self.base or path.startswith(self.base_slash)
        if kind == _EXACT:
            return path == self.base
        if kind == _CHILDREN:
            return path.startswith(self.base_slash)
        if kind == _REGEX:
            return self.regex is not None and self.regex.fullmatch(path) is not None
        return True

    def evaluate(self, req: RequestFacts, path: str, host: str | None) -> int:
        """First failing condition (``_FAIL_*``), or ``_OK``; ``host`` is pre-normalised."""
        if not self.path_matches(path):
            return _FAIL_PATH
        return self.evaluate_beyond_path(req, host)

    def evaluate_beyond_path(self, req: RequestFacts, host: str | None) -> int:
        """Like :meth:`evaluate` for a request whose path is already known to match."""
        if self.needs_host and (
            host is None or not _host_allowed(host, self.exact_hosts, self.suffix_hosts)
        ):
            return _FAIL_HOST
        if self.headers and not _conditions_met(self.headers, req.header):
            return _FAIL_HEADER
        if self.cookies and not _conditions_met(self.cookies, req.cookie):
            return _FAIL_COOKIE
        if self.methods is not None and req.method not in self.methods:
            return _FAIL_METHOD
        return _OK


class _Node(Generic[T]):
    __slots__ = ("candidates", "children", "exact", "prefixed", "simple")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.exact: list[_Route[T]] = []
        self.prefixed: list[_Route[T]] = []
        self.candidates: tuple[_Route[T], ...] = ()
        self.simple = True  # every candidate's verdict depends on the path and method alone


# RouteTable.match remembers the answers that depend on the method and path alone: at most
# this many (the whole cache is dropped when full), for paths up to this length, so memory is
# bounded (under 2 MB) whatever paths clients invent.
_CACHE_ENTRIES: Final = 4096
_CACHE_PATH_LENGTH: Final = 256


class RouteTable(Generic[T]):
    """An immutable, compiled route table; build with :meth:`build`. :meth:`match` remembers
    the answers that depend on the method and path alone (bounded; see `_CACHE_ENTRIES`)."""

    __slots__ = (
        "_cache",
        "_cached",
        "_default",
        "_default_method_mismatch",
        "_default_simple",
        "_no_match",
        "_no_match_method",
        "_root",
        "_routes",
    )

    def __init__(self, entries: Sequence[RouteEntry[T]], default: RouteEntry[T] | None) -> None:
        self._routes = tuple(_Route(index, entry) for index, entry in enumerate(entries))
        self._default = None if default is None else _Route(len(entries), default)
        self._no_match: Match[T] = Match(None, False, None)
        self._no_match_method: Match[T] = Match(None, True, None)
        self._default_method_mismatch: Match[T] = (
            self._no_match_method
            if default is None
            else Match(default, True, default.matcher.path_prefix)
        )
        self._root = _build_trie(self._routes)
        self._default_simple = self._default is None or self._default.simple
        self._cache: dict[str, dict[str, Match[T]]] = {}  # method -> path -> answer
        self._cached = 0

    @classmethod
    def build(
        cls, entries: Sequence[RouteEntry[T]], default: RouteEntry[T] | None
    ) -> RouteTable[T]:
        """Compile ``entries`` (declared order) and the optional ``default`` once."""
        return cls(entries, default)

    def match(self, req: RequestFacts) -> Match[T]:
        """The first route in declared order accepting ``req``, else the default route."""
        path = req.path
        method = req.method
        by_path = self._cache.get(method)
        if by_path is not None:
            answer = by_path.get(path)
            if answer is not None:
                return answer
        node = self._walk(path)
        answer = self._decide(req, path, node)
        if node.simple and self._default_simple and len(path) <= _CACHE_PATH_LENGTH:
            if self._cached >= _CACHE_ENTRIES:
                self._cache = {}
                self._cached = 0
                by_path = None
            if by_path is None:
                by_path = self._cache[method] = {}
            by_path[path] = answer
            self._cached += 1
        return answer

    def match_uncached(self, req: RequestFacts) -> Match[T]:
        """What :meth:`match` answers, decided afresh (benchmarks and checks of the cache)."""
        path = req.path
        return self._decide(req, path, self._walk(path))

    def _walk(self, path: str) -> _Node[T]:
        """The deepest trie node along the path's segments: its candidates are the routes that
        may match."""
        node = self._root
        for segment in path[1:].split("/"):
            child = node.children.get(segment)
            if child is None:
                break
            node = child
        return node

    def _decide(self, req: RequestFacts, path: str, node: _Node[T]) -> Match[T]:
        host: str | None = None
        host_known = False
        method_mismatch = False
        for route in node.candidates:
            if not route.path_matches(path):
                continue
            if route.needs_host and not host_known:
                host, host_known = _request_host(req.host), True
            verdict = route.evaluate_beyond_path(req, host)
            if verdict == _OK:
                return route.found
            if verdict == _FAIL_METHOD:
                method_mismatch = True
        default = self._default
        if default is not None:
            if default.needs_host and not host_known:
                host = _request_host(req.host)
            verdict = default.evaluate(req, path, host)
            if verdict == _OK:
                return self._default_method_mismatch if method_mismatch else default.found
            method_mismatch = method_mismatch or verdict == _FAIL_METHOD
        return self._no_match_method if method_mismatch else self._no_match

    def explain(self, req: RequestFacts) -> list[tuple[str, bool, str]]:
        """For each declared route in order, then the default: (name, accepted, reason).

        ``accepted`` tells whether that route's matcher accepts the request on its own; the
        route :meth:`match` picks is the first accepted one. The default's row is accepted only
        when it would actually be used.
        """
        path, host = req.path, _request_host(req.host)
        rows: list[tuple[str, bool, str]] = []
        for route in self._routes:
            verdict = route.evaluate(req, path, host)
            rows.append((route.entry.name, verdict == _OK, _describe(route, req, host, verdict)))
        default = self._default
        if default is not None:
            verdict = default.evaluate(req, path, host)
            taken = verdict == _OK and not any(accepted for _, accepted, _ in rows)
            reason = _describe(default, req, host, verdict)
            if verdict == _OK and not taken:
                reason = "not used: an earlier route matched"
            rows.append((default.entry.name, taken, f"default route: {reason}"))
        return rows


def _build_trie(routes: Sequence[_Route[T]]) -> _Node[T]:
    root: _Node[T] = _Node()
    unindexed: list[_Route[T]] = []
    for route in routes:
        base = route.index_base if route.kind == _REGEX else route.base
        if route.kind == _ANY or base is None:
            unindexed.append(route)
            continue
        node = root
        for segment in base[1:].split("/"):
            node = node.children.setdefault(segment, _Node())
        (node.exact if route.kind == _EXACT else node.prefixed).append(route)
    pending: list[tuple[_Node[T], list[_Route[T]]]] = [(root, unindexed)]
    while pending:
        node, inherited = pending.pop()
        reaching = inherited + node.prefixed
        node.candidates = tuple(sorted(reaching + node.exact, key=lambda r: r.index))
        node.simple = all(route.simple for route in node.candidates)
        pending.extend((child, reaching) for child in node.children.values())
    return root


def _list(values: Sequence[str] | frozenset[str]) -> str:
    return "[" + ", ".join(sorted(values)) + "]"


def _describe_path(route: _Route[T]) -> str:
    matcher = route.entry.matcher
    if matcher.path_prefix is not None:
        return f"path prefix {matcher.path_prefix}"
    if matcher.path is not None:
        return f"path {matcher.path}"
    if matcher.path_regex is not None:
        return f"path regex {matcher.path_regex.pattern}"
    return "any path"


def _describe_condition(kind: str, wanted: Conditions, lookup: _Lookup) -> str:
    for name, value in wanted:
        actual = lookup(name)
        if actual is None:
            return f"{kind} {name} missing"
        if value is not None and actual != value:
            return f"{kind} {name} is {actual!r}, not {value!r}"
    return f"{kind}s matched"


def _describe(route: _Route[T], req: RequestFacts, host: str | None, verdict: int) -> str:
    matcher = route.entry.matcher
    if verdict == _FAIL_PATH:
        return f"{_describe_path(route)} did not match {req.path}"
    if verdict == _FAIL_HOST:
        hosts = _list(matcher.hosts or ())
        return f"host {host} not in {hosts}" if host else f"host missing, wanted {hosts}"
    if verdict == _FAIL_HEADER:
        return _describe_condition("header", matcher.headers, req.header)
    if verdict == _FAIL_COOKIE:
        return _describe_condition("cookie", matcher.cookies, req.cookie)
    if verdict == _FAIL_METHOD:
        return f"method {req.method} not in {_list(matcher.methods or ())}"
    parts = [f"{_describe_path(route)} matched"]
    if matcher.hosts is not None:
        parts.append(f"host {host} matched")
    parts.extend(f"header {name} matched" for name, _ in matcher.headers)
    parts.extend(f"cookie {name} matched" for name, _ in matcher.cookies)
    if matcher.methods is not None:
        parts.append(f"method {req.method} allowed")
    return ", ".join(parts)


def _prefix_accepts(prefix: str, path: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def rewrite_path(
    path: str, prefix: str | None, *, strip_prefix: bool, replace_prefix: str | None
) -> str:
    """Strip or replace the matched ``prefix`` of ``path``; the result always starts with ``/``.

    ``/api/orders/7`` with prefix ``/api/orders``: strip gives ``/7``, replacement ``/v2/orders``
    gives ``/v2/orders/7``. Without a prefix, or with neither option, ``path`` is unchanged.
    """
    if strip_prefix and replace_prefix is not None:
        raise ValueError("strip_prefix and replace_prefix are exclusive")
    if prefix is None or (not strip_prefix and replace_prefix is None):
        return path
    base = prefix.rstrip("/")
    if not _prefix_accepts(prefix, path) and prefix != "/":
        raise ValueError(f"path {path!r} is not under prefix {prefix!r}")
    rest = path[len(base) :]
    if replace_prefix is None:
        return rest or "/"
    new_base = replace_prefix if replace_prefix.startswith("/") else "/" + replace_prefix
    if not rest:
        return new_base
    return new_base.rstrip("/") + rest
