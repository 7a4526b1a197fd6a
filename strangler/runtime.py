"""The runtime snapshot: everything a request needs, built once per config and swapped as one
reference.

`build_snapshot(config, previous, ...)` compiles the route table and, for each route, the objects
its pipeline uses (upstream pools, breakers, bulkheads, retry budgets, split, shadow, bound metric
children). State that must survive a reload is carried over from `previous`: pools and bulkheads of
upstreams whose settings did not change, breakers of (route, upstream) pairs whose policy did not
change, and retry budgets. Requests in flight keep the snapshot they were routed on.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from strangler.accesslog import quote_json
from strangler.breaker import BreakerState, CircuitBreaker
from strangler.bulkhead import Bulkhead
from strangler.config import Config, Role, RouteConfig, UpstreamConfig
from strangler.headers import HeaderKinds, request_drop_set
from strangler.metrics import Metrics, RouteMetrics, UpstreamMetrics
from strangler.progress import RouteProgress
from strangler.retry import RetryBudget
from strangler.routing import RouteEntry, RouteTable, rewrite_path
from strangler.split import WeightedSplit, bucket_of, parse_override
from strangler.upstream import UpstreamPool

if TYPE_CHECKING:
    from strangler.accesslog import AccessLog
    from strangler.exchange import Exchange
    from strangler.request import RequestHead
    from strangler.server import ClientConnection
    from strangler.shadow import ShadowHub, ShadowRuntime

__all__ = ["DataPlane", "RouteRuntime", "Snapshot", "UpstreamRuntime", "build_snapshot"]

Clock = Callable[[], float]
_NO_EXTRA: Final[list[tuple[bytes, bytes]]] = []  # shared, never mutated: response headers to add


class UpstreamRuntime:
    __slots__ = (
        "base_path",
        "bulkhead",
        "bulkhead_wait",
        "config",
        "host_header",
        "host_line",
        "metrics",
        "name",
        "name_json",
        "pool",
        "response_kinds",
        "role",
        "timeout",
    )

    def __init__(
        self,
        config: UpstreamConfig,
        pool: UpstreamPool,
        bulkhead: Bulkhead | None,
        metrics: UpstreamMetrics,
    ) -> None:
        self.config = config
        self.name = config.name
        self.name_json = quote_json(config.name).encode("ascii")  # for the access log
        self.role = config.role.value
        self.pool = pool
        self.bulkhead = bulkhead
        self.bulkhead_wait = config.bulkhead.max_wait if config.bulkhead else 0.0
        self.metrics = metrics
        self.host_header = config.host_header.encode("idna")
        # The constant middle of every request head to this upstream: the version and Host line.
        self.host_line = b" HTTP/1.1\r\nhost: " + self.host_header + b"\r\n"
        self.base_path = config.base_path
        self.timeout: float = config.timeout  # read per request: a field of this object
        self.response_kinds = HeaderKinds()  # its response header names, in the usual order


class RouteRuntime:
    """One route's compiled pipeline; see `strangler.exchange` for how it is driven."""

    def __init__(
        self,
        config: RouteConfig,
        upstreams: dict[str, UpstreamRuntime],
        breakers: dict[str, CircuitBreaker],
        metrics: RouteMetrics,
        progress: RouteProgress,
    ) -> None:
        self.config = config
        self.name = config.name
        self.name_json = quote_json(config.name).encode("ascii")  # for the access log
        self.stage = config.stage
        # Read per request, so copied out of the interpreted config into this object's fields.
        self.timeout: float | None = config.timeout
        self.per_try_timeout: float | None = config.retry.per_try_timeout
        self.retry_attempts: int = config.retry.attempts
        self.primary = upstreams[config.upstream]
        # choose()'s answer without a split, built once (its empty list is never mutated).
        self.primary_choice = (self.primary, _NO_EXTRA)
        self.fallback = upstreams[config.fallback.upstream] if config.fallback else None
        self.fallback_buffer = config.fallback.buffer_body_bytes if config.fallback else 64 * 1024
        self.fallback_non_idempotent = bool(config.fallback and config.fallback.non_idempotent)
        self.retry = config.retry
        # Per route, as its retry policy: carried over a reload by build_snapshot when unchanged.
        self.retry_budget = RetryBudget.from_policy(config.retry)
        self.max_body_bytes = config.max_body_bytes or 0
        self.breakers = breakers
        self.metrics = metrics
        self.progress = progress
        self.shadow: ShadowRuntime | None = None
        self.upstreams = upstreams
        self.split: WeightedSplit | None = None
        self.internal_headers: frozenset[bytes] = frozenset()
        self.override_cookie: bytes | None = None
        self._override_secret: str | None = None
        self._override_allowed: frozenset[str] = frozenset()
        split = config.split
        if split is not None:
            self.split = WeightedSplit(split.targets)
            self._override_allowed = frozenset(name for name, _ in split.targets)
            override = split.override
            if override is not None:
                if override.header:
                    self.internal_headers = frozenset({override.header.encode()})
                if override.cookie:
                    self.override_cookie = override.cookie.encode()
                if override.secret_env:
                    self._override_secret = os.environ.get(override.secret_env) or None
        rewrite = config.rewrite
        self.rewrites = rewrite.strip_prefix or rewrite.replace_prefix is not None

    # ---- per request --------------------------------------------------------------------
    def breaker_for(self, up: UpstreamRuntime) -> CircuitBreaker | None:
        return self.breakers.get(up.name)

    def fallback_for(self, up: UpstreamRuntime) -> UpstreamRuntime | None:
        fallback = self.fallback
        if fallback is None or fallback is up:
            return None
        return fallback

    def timeout_for(self, up: UpstreamRuntime) -> float:
        timeout = self.timeout
        return timeout if timeout is not None else up.timeout

    def rewrite(self, path: str, prefix: str | None) -> str:
        if not self.rewrites:
            return path
        rw = self.config.rewrite
        return rewrite_path(
            path, prefix, strip_prefix=rw.strip_prefix, replace_prefix=rw.replace_prefix
        )

    def render_head(self, req: RequestHead, up: UpstreamRuntime) -> bytes:
        """The request head for `up` (as `headers.render_request_head`, with the upstream's
        pre-rendered Host line)."""
        # Rewrites describe the extracted service's paths; the monolith keeps the original ones.
        path = req.rewritten if up.role == "extracted" else req.path
        target = (up.base_path + path).encode("latin-1")
        query = req.query
        if query:
            target += b"?" + query if query != b"?" else b"?"
        block = b""
        if req.headers:
            block = b"".join([b"%s: %s\r\n" % (name, value) for name, value in req.headers])
        # Bytes %-formatting of bytes: the compiled build sizes and fills one object.
        return b"%s %s%s%s%s%s\r\n" % (
            req.method_b,
            target,
            up.host_line,
            block,
            req.extra,
            req.framing,
        )

    def choose(
        self, facts: RequestHead, client: ClientConnection
    ) -> tuple[UpstreamRuntime, list[tuple[bytes, bytes]]]:
        split = self.split
        if split is None:
            return self.primary_choice
        settings = self.config.split
        assert settings is not None
        override = settings.override
        if override is not None:
            value = None
            if override.header:
                value = facts.header(override.header)
            if value is None and override.cookie:
                value = facts.cookie(override.cookie)
            if value is not None:
                forced = parse_override(value, self._override_allowed, self._override_secret)
                if forced is not None:
                    return self.upstreams[forced], _NO_EXTRA
        sticky = settings.sticky
        key: str | None
        extra: list[tuple[bytes, bytes]] = []
        if sticky.cookie:
            key = facts.cookie(sticky.cookie)
        elif sticky.header:
            key = facts.header(sticky.header)
        else:
            key = client.peer
        if key is None and sticky.set_cookie:
            key = facts.cookie(sticky.set_cookie)
            if key is None:
                key = os.urandom(12).hex()
                extra.append(
                    (
                        b"set-cookie",
                        f"{sticky.set_cookie}={key}; Path=/; Max-Age={sticky.cookie_max_age}; "
                        "HttpOnly; SameSite=Lax".encode(),
                    )
                )
        if key is None:
            key = client.peer
        return self.upstreams[split.choose(bucket_of(key, sticky.salt))], extra

    def snapshot(self) -> dict[str, Any]:
        split = self.config.split
        return {
            "name": self.name,
            "stage": self.stage.value,
            "upstream": self.primary.name,
            "fallback": self.fallback.name if self.fallback else None,
            "extracted_weight": extracted_weight(self.config, self.upstreams),
            "split": [{"upstream": n, "weight": w} for n, w in split.targets] if split else None,
            "shadow": self.config.shadow.upstream if self.config.shadow else None,
            "breakers": {name: b.snapshot() for name, b in self.breakers.items()},
            "line": self.config.line,
        }


def extracted_weight(route: RouteConfig, upstreams: dict[str, UpstreamRuntime]) -> float:
    """The configured share of a route's traffic that extracted services serve."""
    if route.split is not None:
        return route.split.extracted_weight
    return 100.0 if upstreams[route.upstream].role == Role.EXTRACTED.value else 0.0


class Snapshot:
    def __init__(
        self,
        config: Config,
        table: RouteTable[RouteRuntime],
        routes: dict[str, RouteRuntime],
        upstreams: dict[str, UpstreamRuntime],
    ) -> None:
        self.config = config
        self.table = table
        self.routes = routes
        self.upstreams = upstreams
        self.loaded_at = time.time()


def build_snapshot(
    config: Config,
    previous: Snapshot | None,
    metrics: Metrics,
    on_breaker: Callable[[str, str, BreakerState, BreakerState], None],
    shadow_hub: ShadowHub | None = None,
    clock: Clock = time.monotonic,
) -> Snapshot:
    old_ups = previous.upstreams if previous else {}
    upstreams: dict[str, UpstreamRuntime] = {}
    for name, up in config.upstreams.items():
        old = old_ups.get(name)
        same_conn = old is not None and (
            old.config.host,
            old.config.port,
            old.config.pool_size,
            old.config.connect_timeout,
        ) == (up.host, up.port, up.pool_size, up.connect_timeout)
        pool = (
            old.pool
            if old is not None and same_conn
            else UpstreamPool(
                up.host, up.port, max_idle=up.pool_size, connect_timeout=up.connect_timeout
            )
        )
        if old is not None and old.config.bulkhead == up.bulkhead:
            bulkhead = old.bulkhead
        else:
            bulkhead = (
                Bulkhead(up.bulkhead.max_concurrent, up.bulkhead.max_waiting)
                if up.bulkhead
                else None
            )
        upstreams[name] = UpstreamRuntime(up, pool, bulkhead, UpstreamMetrics(metrics, name))

    old_routes = previous.routes if previous else {}
    routes: dict[str, RouteRuntime] = {}
    entries: list[RouteEntry[RouteRuntime]] = []
    all_routes = list(config.routes)
    if config.default_route is not None:
        all_routes.append(config.default_route)
    for route in all_routes:
        names = {route.upstream}
        if route.fallback:
            names.add(route.fallback.upstream)
        if route.split:
            names.update(n for n, _ in route.split.targets)
        roles = {n: upstreams[n].role for n in names}
        breakers: dict[str, CircuitBreaker] = {}
        old_route = old_routes.get(route.name)
        if route.breaker is not None:
            # Breakers guard the extracted side (and any primary); the fallback has none of its own.
            guarded = names - ({route.fallback.upstream} if route.fallback else set())
            for up_name in sorted(guarded):
                old_breaker = old_route.breakers.get(up_name) if old_route else None
                if old_breaker is not None and old_breaker.policy == route.breaker:
                    breakers[up_name] = old_breaker
                else:
                    breakers[up_name] = _new_breaker(
                        route.name, up_name, route, clock, on_breaker, metrics
                    )
        progress = old_route.progress if old_route else RouteProgress(clock)
        rt = RouteRuntime(route, upstreams, breakers, metrics.route(route.name, roles), progress)
        if old_route is not None and (
            old_route.retry.budget_percent,
            old_route.retry.min_retry_concurrency,
        ) == (route.retry.budget_percent, route.retry.min_retry_concurrency):
            rt.retry_budget = old_route.retry_budget
        rt.max_body_bytes = route.max_body_bytes or config.limits.max_body_bytes
        if route.shadow is not None and shadow_hub is not None:
            rt.shadow = shadow_hub.runtime_for(
                rt, upstreams[route.shadow.upstream], old_route.shadow if old_route else None
            )
        routes[route.name] = rt
        if route is not config.default_route:
            entries.append(RouteEntry(route.name, route.matcher, rt))
    default = None
    if config.default_route is not None:
        d = config.default_route
        default = RouteEntry(d.name, d.matcher, routes[d.name])
    table = RouteTable.build(entries, default)
    metrics.set_stages(
        ((r.name, r.stage.value, extracted_weight(r.config, upstreams)) for r in routes.values()),
        old_routes.keys(),
    )
    return Snapshot(config, table, routes, upstreams)


def _new_breaker(
    route: str,
    upstream: str,
    config: RouteConfig,
    clock: Clock,
    on_breaker: Callable[[str, str, BreakerState, BreakerState], None],
    metrics: Metrics,
) -> CircuitBreaker:
    assert config.breaker is not None

    def transition(old: BreakerState, new: BreakerState) -> None:
        metrics.breaker_changed(route, upstream, old.value, new.value)
        on_breaker(route, upstream, old, new)

    breaker = CircuitBreaker(config.breaker, clock, transition)
    metrics.breaker_changed(route, upstream, None, BreakerState.CLOSED.value)
    return breaker


def retire_snapshot(old: Snapshot, new: Snapshot) -> None:
    """Close pools the new snapshot no longer uses (idle connections only; busy ones finish)."""
    kept = {id(up.pool) for up in new.upstreams.values()}
    for up in old.upstreams.values():
        if id(up.pool) not in kept:
            up.pool.close_idle()


class DataPlane:
    """Shared state of the client connections: the current snapshot and the request recorders."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        snapshot: Snapshot,
        metrics: Metrics,
        access: AccessLog,
        logger: Any,
    ) -> None:
        self.loop = loop
        self.metrics = metrics
        self.access = access
        self.logger = logger
        self.connections: set[ClientConnection] = set()
        # 16 hex digits of a fixed length, then the counter in decimal: unique and alphanumeric.
        self._id_prefix = os.urandom(8).hex().encode()
        self._id_counter = 0
        self.snapshot = snapshot
        self.install(snapshot)

    def install(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        config = snapshot.config
        limits = self.limits = config.limits
        # Copied out of the (interpreted) config: the compiled data plane reads its own fields.
        self.max_headers: int = limits.max_headers
        self.max_header_bytes: int = limits.max_header_bytes
        self.max_request_line: int = limits.max_request_line
        self.head_limit = limits.max_request_line + limits.max_header_bytes
        self.header_timeout: float = limits.header_timeout
        self.body_timeout: float = limits.body_timeout
        self.idle_timeout: float = limits.idle_timeout
        self.trust_forwarded = config.forwarding.trust_forwarded_headers
        self.request_id_header = config.forwarding.request_id_header.lower().encode()
        self.request_drop = request_drop_set(trust_forwarded=self.trust_forwarded)

    def new_request_id(self) -> bytes:
        """A unique id: a random per-process prefix and a counter (cheaper than urandom)."""
        self._id_counter = number = self._id_counter + 1
        return b"%s%d" % (self._id_prefix, number)

    def forwarding_headers(
        self, raw: list[tuple[bytes, bytes]], host: object, peer_b: bytes, request_id: bytes
    ) -> bytes:
        """The proxy's forwarding headers and request id as rendered head lines (each ending in
        CRLF); `peer_b` is the client's address."""
        if not self.trust_forwarded and isinstance(host, str):
            # Bytes %-formatting of bytes: the compiled build sizes and fills one object.
            return (
                b"x-forwarded-for: %s\r\n"
                b"x-forwarded-proto: http\r\n"
                b"x-forwarded-host: %s\r\n"
                b"%s: %s\r\n" % (peer_b, host.encode("latin-1"), self.request_id_header, request_id)
            )
        extra: list[tuple[bytes, bytes]] = []
        if self.trust_forwarded:
            # The filter kept the client's -Proto/-Host and dropped its XFF, appended to here.
            prior = [v for n, v in raw if n == b"x-forwarded-for"]
            extra.append((b"x-forwarded-for", b", ".join([*prior, peer_b])))
            if not any(n == b"x-forwarded-proto" for n, _ in raw):
                extra.append((b"x-forwarded-proto", b"http"))
            if isinstance(host, str) and not any(n == b"x-forwarded-host" for n, _ in raw):
                extra.append((b"x-forwarded-host", host.encode("latin-1")))
        else:
            extra.append((b"x-forwarded-for", peer_b))
            extra.append((b"x-forwarded-proto", b"http"))
            if isinstance(host, str):
                extra.append((b"x-forwarded-host", host.encode("latin-1")))
        extra.append((self.request_id_header, request_id))
        return b"".join([name + b": " + value + b"\r\n" for name, value in extra])

    # ---- recording ----------------------------------------------------------------------
    def record(
        self,
        ex: Exchange,
        peer: str,
        peer_json: bytes,
        *,
        status_override: int | None = None,
        error: str | None = None,
    ) -> None:
        """Metrics, progress and the access line of one answered request; `peer_json` is the
        client's address `peer` as a JSON string literal."""
        status = status_override or ex.status
        duration = (ex.end or self.loop.time()) - ex.start
        route = ex.route
        up = ex.upstream
        route.metrics.observe(up.name, ex.method, status, duration)
        route.progress.record(up.role == "extracted", ex.head.path, ex.end)
        access = self.access
        if not access.enabled:
            return
        duration_us = int(duration * 1_000_000)
        if ex.fallback_reason is None and error is None:
            access.proxied(
                ex.request_id,
                ex.head.method_b,
                ex.head.path,
                route.name_json,
                up.name_json,
                status,
                duration_us,
                ex.response_bytes,
                peer_json,
            )
            return
        request_id = ex.request_id.decode("ascii")  # a safe alphabet (see scan_request)
        access.log(
            request_id,
            ex.method,
            ex.head.path,
            route.name,
            up.name,
            status,
            duration_us,
            ex.response_bytes,
            peer,
            ex.fallback_reason,
            error,
        )

    def record_abandoned(self, ex: Exchange) -> None:
        self.record(ex, "-", b'"-"', status_override=499, error="client_closed")

    def record_local(
        self, status: int, error: str, kind: str | None, peer: str, request_id: bytes
    ) -> None:
        self.metrics.client_errors.labels(str(status), kind or error).inc()
        self.access.log(
            request_id.decode("ascii", "replace"),
            None,
            None,
            None,
            None,
            status,
            None,
            None,
            peer,
            None,
            kind or error,
        )

    def count_timeout(self, kind: str) -> None:
        self.metrics.client_errors.labels("408", f"{kind}_timeout").inc()

    def log_internal_error(self, exc: BaseException | None) -> None:
        self.logger.error("strangler.proxy.internal_error", exc_info=exc)
