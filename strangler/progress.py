"""Migration progress per route: the share of requests extracted services actually served, and the
monolith's remaining surface (which path templates still reach it). Pure: an injected clock.

The share is counted in 10-second buckets over a sliding window (5 minutes by default), so memory is
fixed per route. Paths are reduced to templates before counting (`/api/orders/17` ->
`/api/orders/{id}`) and at most `max_templates` distinct templates are kept per route, so a client
inventing paths cannot grow memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

__all__ = ["RouteProgress", "path_template"]

_DIGIT: Final = re.compile(r"\d")
_ID_SEGMENT: Final = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}|[A-Z]{2,5}-\d+)$"
)


# Templating a path costs a regex per segment; the same paths recur, so results are memoised
# (a pure function of the path, bounded: cleared when full).
_TEMPLATE_CACHE: Final[dict[str, str]] = {}
_TEMPLATE_CACHE_SIZE: Final = 4096


def path_template(path: str) -> str:
    """Replace segments that look like identifiers with `{id}`."""
    if _DIGIT.search(path) is None:
        return path
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


class RouteProgress:
    """Sliding-window counts of requests served by extracted vs legacy upstreams for one route."""

    __slots__ = (
        "_buckets",
        "_clock",
        "_current",
        "_current_index",
        "_templates",
        "bucket_seconds",
        "max_templates",
        "size",
    )

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        window: float = 300.0,
        bucket_seconds: float = 10.0,
        max_templates: int = 200,
    ) -> None:
        self._clock = clock
        self.bucket_seconds = bucket_seconds
        self.size = max(1, int(window / bucket_seconds))
        # bucket index -> [extracted, total]
        self._buckets: dict[int, list[int]] = {}
        self._current_index = -1  # the bucket the last request went to, and that bucket
        self._current: list[int] = []
        self._templates: dict[str, int] = {}
        self.max_templates = max_templates

    def record(self, extracted: bool, path: str, now: float = 0.0) -> None:
        """Count one request; `now` is a reading of the same monotonic clock taken by the caller
        (the data plane passes its loop's time, CLOCK_MONOTONIC as time.monotonic), or 0.0."""
        index = int((now or self._clock()) / self.bucket_seconds)
        if index == self._current_index:
            bucket = self._current  # the usual case: the bucket of the previous request
        else:
            found = self._buckets.get(index)
            if found is None:
                self._expire(index)
                found = self._buckets[index] = [0, 0]
            bucket = self._current = found
            self._current_index = index
        bucket[1] += 1
        if extracted:
            bucket[0] += 1
            return
        template = _TEMPLATE_CACHE.get(path)
        if template is None:
            if len(_TEMPLATE_CACHE) >= _TEMPLATE_CACHE_SIZE:
                _TEMPLATE_CACHE.clear()
            template = _TEMPLATE_CACHE[path] = path_template(path)
        templates = self._templates
        if template in templates:
            templates[template] += 1
        elif len(templates) < self.max_templates:
            templates[template] = 1
        else:
            templates["{other}"] = templates.get("{other}", 0) + 1

    def _expire(self, now_index: int) -> None:
        oldest = now_index - self.size + 1
        for index in [i for i in self._buckets if i < oldest]:
            del self._buckets[index]

    def counts(self) -> tuple[int, int]:
        """(served by extracted, total) over the window."""
        oldest = int(self._clock() / self.bucket_seconds) - self.size + 1
        extracted = total = 0
        for index, (e, t) in self._buckets.items():
            if index >= oldest:
                extracted += e
                total += t
        return extracted, total

    def extracted_share(self) -> float | None:
        extracted, total = self.counts()
        return None if total == 0 else 100.0 * extracted / total

    def legacy_templates(self, top: int = 20) -> list[tuple[str, int]]:
        """Path templates still served by the monolith since start, most requested first."""
        return sorted(self._templates.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
