"""Which routes can never match: an earlier route accepts every request a later one accepts.

Pure and conservative: route B is reported shadowed by an earlier route A only when A's matcher
provably accepts everything B's does (path condition covering B's, methods and hosts a superset,
header and cookie conditions implied). Regex routes are judged shadowed only by a route with no
path condition. The config loader reports each as an error with both routes' names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from strangler.routing import (  # the matcher's own helpers, shared on purpose
    Conditions,
    RouteEntry,
    RouteMatcher,
    _host_allowed,
    _prefix_accepts,
)

__all__ = ["unreachable_routes"]

T = TypeVar("T")


def unreachable_routes(entries: Sequence[RouteEntry[T]]) -> list[tuple[int, int]]:
    """(index of a route that can never match, index of the earliest route shadowing it).

    Conservative: a pair is reported only when the earlier matcher provably accepts every
    request the later one accepts. A regex route is judged shadowed only by a route with no
    path condition; a regex route shadows only exact paths it fully matches.
    """
    found: list[tuple[int, int]] = []
    for later_index, later in enumerate(entries):
        for earlier_index in range(later_index):
            if _covers(entries[earlier_index].matcher, later.matcher):
                found.append((later_index, earlier_index))
                break
    return found


def _covers(earlier: RouteMatcher, later: RouteMatcher) -> bool:
    return (
        _covers_path(earlier, later)
        and (
            earlier.methods is None
            or (later.methods is not None and later.methods <= earlier.methods)
        )
        and _covers_hosts(earlier.hosts, later.hosts)
        and _implied(earlier.headers, later.headers)
        and _implied(earlier.cookies, later.cookies)
    )


def _covers_path(earlier: RouteMatcher, later: RouteMatcher) -> bool:
    earlier_prefix = earlier.path_prefix
    if earlier.path is None and earlier.path_regex is None and earlier_prefix in (None, "/"):
        return True
    if later.path is not None:
        if earlier.path is not None:
            return earlier.path == later.path
        if earlier.path_regex is not None:
            return earlier.path_regex.fullmatch(later.path) is not None
        return earlier_prefix is not None and _prefix_accepts(earlier_prefix, later.path)
    later_prefix = later.path_prefix
    if earlier_prefix is None or later_prefix is None or later_prefix == "/":
        return False
    if later_prefix.endswith("/"):
        return later_prefix.startswith(earlier_prefix.rstrip("/") + "/")
    return _prefix_accepts(earlier_prefix, later_prefix)


def _covers_hosts(earlier: tuple[str, ...] | None, later: tuple[str, ...] | None) -> bool:
    if earlier is None:
        return True
    if later is None:
        return False
    exact = frozenset(h for h in earlier if not h.startswith("*."))
    suffixes = tuple(h[1:] for h in earlier if h.startswith("*."))
    for host in later:
        if host.startswith("*."):
            if not any(host[1:].endswith(suffix) for suffix in suffixes):
                return False
        elif not _host_allowed(host, exact, suffixes):
            return False
    return True


def _implied(earlier: Conditions, later: Conditions) -> bool:
    """Every request meeting ``later`` also meets ``earlier``."""
    return all(
        any(
            name == other and (value is None or value == other_value)
            for other, other_value in later
        )
        for name, value in earlier
    )
