"""Prometheus metrics: the families, and label children bound once per config snapshot.

Every family lives in an injected `CollectorRegistry` (no module globals), so tests and several
proxies in one process do not collide. Label values are only route names, upstream names and small
closed sets (method, status code, error kind, outcome): never a raw path or other user input.
The request path touches only pre-bound children and one small dict lookup per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

from strangler import __version__

__all__ = ["KNOWN_METHODS", "Metrics", "RouteMetrics", "UpstreamMetrics"]

KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
STAGES: Final = ("legacy", "shadow", "canary", "migrated", "retired")
BREAKER_STATES: Final = ("closed", "open", "half_open")
# Typed as a variable-length tuple: a fixed-length one is a C struct in the compiled build,
# boxed into a new tuple of 14 floats every time a loop walks it.
_BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Metrics:
    """All metric families of one proxy."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._tracked: list[RouteMetrics] = []
        self._routes: dict[tuple[str, frozenset[tuple[str, str]]], RouteMetrics] = {}
        r = self.registry
        # Registered before the families, so every collection sees the pending counts.
        r.register(_FlushFirst(self))
        self.requests = Counter(
            "strangler_requests",
            "Requests answered, by route, upstream, upstream role, method and status code.",
            ["route", "upstream", "role", "method", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "strangler_request_duration_seconds",
            "Time from request head to the end of the response.",
            ["route", "upstream", "role"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "strangler_upstream_errors",
            "Failed upstream attempts by kind (refused, reset, timeout, malformed).",
            ["route", "upstream", "kind"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "strangler_circuit_breaker_state",
            "1 for the current state of each route's breaker.",
            ["route", "upstream", "state"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.breaker_transitions = Counter(
            "strangler_circuit_breaker_transitions",
            "Breaker state transitions by target state.",
            ["route", "upstream", "to"],
            registry=r,
        )
        self.fallbacks = Counter(
            "strangler_fallbacks",
            "Requests served by a fallback upstream, by reason.",
            ["route", "from_upstream", "to_upstream", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "strangler_retries", "Retried upstream attempts.", ["route", "upstream"], registry=r
        )
        self.bulkhead_rejections = Counter(
            "strangler_bulkhead_rejections",
            "Requests rejected because an upstream's bulkhead was full.",
            ["upstream"],
            registry=r,
        )
        self.shadow_requests = Counter(
            "strangler_shadow_requests",
            "Shadow requests by outcome (sent, dropped, skipped, failed).",
            ["route", "upstream", "outcome"],
            registry=r,
        )
        self.shadow_comparisons = Counter(
            "strangler_shadow_comparisons",
            "Shadow response comparisons by result (match, mismatch).",
            ["route", "result"],
            registry=r,
        )
        self.route_stage = Gauge(
            "strangler_route_stage",
            "1 for each route's migration stage.",
            ["route", "stage"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.route_weight = Gauge(
            "strangler_route_extracted_weight",
            "Configured share (percent) of a route's traffic sent to extracted services.",
            ["route"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "strangler_config_reloads", "Config reloads by result.", ["result"], registry=r
        )
        self.last_reload = Gauge(
            "strangler_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            registry=r,
            multiprocess_mode="max",
        )
        self.client_errors = Counter(
            "strangler_client_errors",
            "Requests the proxy answered itself (bad request, limits, no route, timeouts).",
            ["code", "reason"],
            registry=r,
        )
        self.build_info = Gauge(
            "strangler_build_info",
            "Build information.",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__).set(1)
        for result in ("success", "failure"):
            self.reloads.labels(result)

    def track(self, route_metrics: RouteMetrics) -> None:
        self._tracked.append(route_metrics)

    def route(self, name: str, roles: dict[str, str]) -> RouteMetrics:
        """The route's bound children, the same object for the same route and upstreams.

        Reused across config snapshots, so requests still finishing on an old snapshot after a
        reload add to counts that the next flush still sees (a new object per snapshot would
        lose what was pending in the old one when it went away).
        """
        key = (name, frozenset(roles.items()))
        found = self._routes.get(key)
        if found is None:
            found = self._routes[key] = RouteMetrics(self, name, roles)
        return found

    def flush(self) -> None:
        """Move every route's pending per-request counts into the Prometheus children."""
        for route_metrics in self._tracked:
            route_metrics.flush()

    def set_stages(self, routes: Iterable[tuple[str, str, float]], previous: Iterable[str]) -> None:
        """Publish each route's stage and extracted weight; drop routes that disappeared."""
        current = set()
        for name, stage, weight in routes:
            current.add(name)
            for s in STAGES:
                self.route_stage.labels(name, s).set(1 if s == stage else 0)
            self.route_weight.labels(name).set(weight)
        for name in set(previous) - current:
            for s in STAGES:
                _remove(self.route_stage, name, s)
            _remove(self.route_weight, name)

    def breaker_changed(self, route: str, upstream: str, old: str | None, new: str) -> None:
        for state in BREAKER_STATES:
            self.breaker_state.labels(route, upstream, state).set(1 if state == new else 0)
        if old is not None:
            self.breaker_transitions.labels(route, upstream, new).inc()


class _FlushFirst:
    """A collector with no metrics of its own: collecting it flushes the pending counts."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        self._metrics.flush()
        return []


def _remove(metric: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class UpstreamMetrics:
    """Children bound for one upstream (shared by every route that uses it)."""

    __slots__ = ("_bulkhead", "_errors", "_m", "name")

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._m = metrics
        self.name = name
        self._bulkhead = metrics.bulkhead_rejections.labels(name)
        self._errors: dict[tuple[str, str], Counter] = {}

    def bulkhead_rejected(self) -> None:
        self._bulkhead.inc()

    def error(self, route: str, kind: str) -> None:
        key = (route, kind)
        child = self._errors.get(key)
        if child is None:
            child = self._errors[key] = self._m.upstream_errors.labels(route, self.name, kind)
        child.inc()


# Methods by code: `observe` counts a request under one int (status * 16 + method code).
_METHODS: Final = (*sorted(KNOWN_METHODS), "OTHER")
_METHOD_CODES: Final = {method: code for code, method in enumerate(_METHODS)}
_OTHER: Final = len(_METHODS) - 1


class _Series:
    """What one route counted for one upstream since the last flush."""

    __slots__ = ("counts", "hist")

    def __init__(self, hist: list[float] | None) -> None:
        self.counts: dict[int, int] = {}  # status * 16 + method code -> requests
        # [count per bucket (len(_BUCKETS) + 1 for +Inf)..., sum of seconds], or None for an
        # upstream outside the route's roles (no histogram child). Floats throughout, so the
        # compiled build adds unboxed floats instead of converting ints.
        self.hist = hist


class RouteMetrics:
    """Children bound for one route; `observe` is the per-request call.

    `observe` only adds to plain counters in this object (a dict increment and a bucket index);
    `flush` moves them into the Prometheus children. `Metrics.flush` runs before every collection
    (so a scrape is always exact) and once a second (for other workers' scrapes under
    `--workers`). Taking prometheus_client's locks three times per request cost more than the
    rest of the recording together.
    """

    __slots__ = (
        "_durations",
        "_m",
        "_requests",
        "_retries",
        "_series",
        "name",
        "roles",
    )

    def __init__(self, metrics: Metrics, name: str, roles: dict[str, str]) -> None:
        self._m = metrics
        self.name = name
        self.roles = roles
        self._durations = {
            up: metrics.duration.labels(name, up, role) for up, role in roles.items()
        }
        self._requests: dict[tuple[str, int], Counter] = {}
        self._retries = {up: metrics.retries.labels(name, up) for up in roles}
        self._series = {up: _Series([0.0] * (len(_BUCKETS) + 2)) for up in roles}
        metrics.track(self)

    def observe(self, upstream: str, method: str, status: int, seconds: float) -> None:
        series = self._series.get(upstream)
        if series is None:
            series = self._series[upstream] = _Series(None)
        code = _METHOD_CODES.get(method)
        key = status * 16 + (_OTHER if code is None else code)
        counts = series.counts
        counts[key] = counts.get(key, 0) + 1
        hist = series.hist
        if hist is not None:
            # Linear: most answers fall in the first buckets, and a compiled loop over unboxed
            # floats beats a call to bisect through the module globals.
            index = 0
            for bound in _BUCKETS:
                if seconds <= bound:
                    break
                index += 1
            hist[index] += 1.0
            hist[-1] += seconds

    def flush(self) -> None:
        for upstream, series in self._series.items():
            counts = series.counts
            if counts:
                series.counts = {}
                for key, count in counts.items():
                    child = self._requests.get((upstream, key))
                    if child is None:
                        status, code = divmod(key, 16)
                        role = self.roles.get(upstream, "none")
                        child = self._requests[(upstream, key)] = self._m.requests.labels(
                            self.name, upstream, role, _METHODS[code], str(status)
                        )
                    child.inc(count)
            hist = series.hist
            if hist is None or not any(hist[:-1]):
                continue
            histogram: Any = self._durations[upstream]
            # prometheus_client's Histogram child: one value per bucket (+Inf last) and a sum,
            # exactly what `observe` increments (tests/unit/test_metrics.py pins this).
            buckets = histogram._buckets
            for index in range(len(hist) - 1):
                if hist[index]:
                    buckets[index].inc(hist[index])
                    hist[index] = 0.0
            histogram._sum.inc(hist[-1])
            hist[-1] = 0.0

    def retried(self, upstream: str) -> None:
        child = self._retries.get(upstream)
        if child is not None:
            child.inc()

    def fell_back(self, from_upstream: str, to_upstream: str, reason: str) -> None:
        self._m.fallbacks.labels(self.name, from_upstream, to_upstream, reason).inc()
