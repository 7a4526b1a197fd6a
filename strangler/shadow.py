"""Shadow traffic: mirror a sample of a route's requests to an extracted service and compare
answers.

The client's response always comes from the primary and is streamed as usual. A mirrored copy is
sent once the request body is complete, on the shadow upstream's own connection pool, and its answer
is captured into memory (up to `capture_bytes`). When both the primary's and the shadow's answers
are in, `strangler.diff.compare` runs and the result is counted and, on a mismatch, stored.

Invariants:
- the shadow can never delay, fail or change the primary response: nothing here writes to the
  client, every shadow failure ends in this module, and the primary never waits for the shadow;
- at most `max_in_flight` shadow requests per route are outstanding; above it new ones are dropped
  and counted; bodies over `max_body_bytes` are not mirrored and counted as skipped;
- a request carrying the shadow marker is never mirrored again (loop guard);
- optionally a share of mirrored requests is also sent a second time to the primary upstream, and
  fields that differ between the two primary answers are learned as noise (as Diffy does).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from strangler.diff import CapturedResponse, NoiseModel, compare
from strangler.headers import render_request_head
from strangler.mismatches import MismatchStore, jsonl_line
from strangler.sampling import BernoulliSampler
from strangler.upstream import ResponseSink, UpstreamConnection, UpstreamPool

if TYPE_CHECKING:
    from strangler.config import ShadowSettings
    from strangler.exchange import Exchange
    from strangler.metrics import Metrics
    from strangler.request import RequestHead
    from strangler.runtime import RouteRuntime, UpstreamRuntime

__all__ = ["SHADOW_MARKER", "ShadowCapture", "ShadowHub", "ShadowRuntime"]

SHADOW_MARKER: Final = b"x-strangler-shadow"


class ShadowHub:
    """Process-wide shadow state: separate pools, the mismatch store, noise models, counters."""

    def __init__(
        self,
        metrics: Metrics,
        logger: Any,
        *,
        store: MismatchStore | None = None,
        jsonl_path: str | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.metrics = metrics
        self.logger = logger
        self.store = store if store is not None else MismatchStore()
        self.jsonl_path = jsonl_path
        self.rand = rand
        self.pools: dict[tuple[str, int], UpstreamPool] = {}
        self.noise: dict[str, NoiseModel] = {}
        self.in_flight = 0

    def pool_for(self, up: UpstreamRuntime) -> UpstreamPool:
        key = (up.config.host, up.config.port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = UpstreamPool(
                up.config.host,
                up.config.port,
                max_idle=16,
                connect_timeout=up.config.connect_timeout,
            )
        return pool

    def runtime_for(
        self, route: RouteRuntime, target: UpstreamRuntime, previous: ShadowRuntime | None
    ) -> ShadowRuntime:
        settings = route.config.shadow
        assert settings is not None
        rt = ShadowRuntime(self, route, target, settings)
        if previous is not None:
            # One count across reloads: copies sent under the old runtime still hold their slots.
            rt.outstanding = previous.outstanding
        return rt

    def noise_for(self, route: str) -> NoiseModel:
        model = self.noise.get(route)
        if model is None:
            model = self.noise[route] = NoiseModel()
        return model

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


class _Outstanding:
    """Shadow requests in flight for one route, shared by its successive runtimes."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class ShadowRuntime:
    """One route's shadow settings, bound to its counters."""

    def __init__(
        self, hub: ShadowHub, route: RouteRuntime, target: UpstreamRuntime, settings: ShadowSettings
    ) -> None:
        self.hub = hub
        self.route = route
        self.target = target
        self.settings = settings
        compared = settings.compare.compared_headers
        self.compared_headers = tuple(name.encode("latin-1") for name in compared)
        # Which requests are mirrored: a random draw per mirrored request, not per request.
        self.sampler = BernoulliSampler(settings.percent, hub.rand)
        self.outstanding = _Outstanding()
        counter = hub.metrics.shadow_requests
        self.sent = counter.labels(route.name, target.name, "sent")
        self.dropped = counter.labels(route.name, target.name, "dropped")
        self.skipped = counter.labels(route.name, target.name, "skipped")
        self.failed = counter.labels(route.name, target.name, "failed")
        comparisons = hub.metrics.shadow_comparisons
        self.matched = comparisons.labels(route.name, "match")
        self.mismatched = comparisons.labels(route.name, "mismatch")

    @property
    def in_flight(self) -> int:
        return self.outstanding.count

    def begin(
        self,
        ex: Exchange,
        req: RequestHead,
        length: int | None,
        raw: list[tuple[bytes, bytes]],
    ) -> ShadowCapture | None:
        """`raw` is this request's own client headers (not the connection's latest parsed ones)."""
        if not self.sampler.take():
            return None
        settings = self.settings
        if any(n == SHADOW_MARKER for n, _ in raw):
            return None  # loop guard: a mirrored request is never mirrored again
        if ex.method not in settings.methods:
            self.skipped.inc()
            return None
        if length is not None and length > settings.max_body_bytes:
            self.skipped.inc()
            return None
        if self.in_flight >= settings.max_in_flight:
            self.dropped.inc()
            return None
        noise = settings.noise_percent > 0 and self.hub.rand() * 100.0 < settings.noise_percent
        return ShadowCapture(self, ex, req, noise)


class _Collector(ResponseSink):
    """A ResponseSink that captures one upstream answer into memory."""

    __slots__ = (
        "body",
        "cap",
        "conn",
        "done",
        "error",
        "finished",
        "headers",
        "size",
        "status",
        "timer",
        "truncated",
    )

    def __init__(self, cap: int, done: Callable[[_Collector], None]) -> None:
        self.cap = cap
        self.done = done
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.truncated = False
        self.error: str | None = None
        self.finished = False
        self.conn: UpstreamConnection | None = None
        self.timer: asyncio.TimerHandle | None = None

    def response(self) -> CapturedResponse:
        return _captured(self.status, self.headers, b"".join(self.body), self.truncated)

    def on_upstream_head(
        self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.status = status
        self.headers = headers

    def on_upstream_body(self, data: bytes) -> None:
        room = self.cap - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data = data[:room]
            self.truncated = True
        self.body.append(data)
        self.size += len(data)

    def on_upstream_complete(self) -> None:
        self._end(None)

    def on_upstream_error(self, kind: str, response_started: bool) -> None:
        self._end(kind)

    def on_upstream_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None:
        conn.close()
        self._end("malformed")

    def flush_output(self) -> None:
        pass

    def pause_client_reading(self) -> None:
        pass

    def resume_client_reading(self) -> None:
        pass

    def _end(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.error = error
        self.conn = None
        self.done(self)


def _same_answer(a: _Collector, b: _Collector, compared: tuple[bytes, ...]) -> bool:
    """Whether two answers are equal under any comparison policy that compares the headers
    `compared` (lower-case): same status, same whole body bytes, the same values of those
    headers in the same order. `diff.compare` would find no difference; this costs a fraction
    of it (the usual case of a healthy shadow). False says nothing: compare() decides."""
    if a.status != b.status or a.truncated or b.truncated or a.size != b.size:
        return False
    if a.body != b.body and b"".join(a.body) != b"".join(b.body):
        return False
    if compared:
        return _wanted(a.headers, compared) == _wanted(b.headers, compared)
    return True


def _wanted(headers: list[tuple[bytes, bytes]], compared: tuple[bytes, ...]) -> list[bytes]:
    values: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in compared:
            values.append(lowered)
            values.append(value.strip())
    return values


def _ignore(collector: _Collector) -> None:
    pass


def _captured(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes, truncated: bool
) -> CapturedResponse:
    return CapturedResponse(
        status=status,
        headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers),
        body=body,
        truncated=truncated,
    )


class ShadowCapture:
    """One mirrored request: the copy of the request body and of the primary's answer."""

    def __init__(self, rt: ShadowRuntime, ex: Exchange, req: RequestHead, noise: bool) -> None:
        self.rt = rt
        self.ex = ex
        self.req = req
        self.noise = noise
        self.body: list[bytes] = []
        self.body_size = 0
        self.skipped = False
        # The primary's answer, captured with the same cap as the shadow's (never "finished":
        # the exchange reports its end through on_primary_complete).
        self.primary = _Collector(rt.settings.capture_bytes, _ignore)
        self.primary_done = False
        self.abandoned = False
        self.pending = 0
        self.shadow: _Collector | None = None
        self.second: _Collector | None = None
        self.started = False
        # The in-flight slot is taken now, not when the body completes, so slow bodies cannot
        # push the route over max_in_flight; it is given back exactly once (_release).
        self.reserved = True
        rt.outstanding.count += 1

    def _release(self) -> None:
        if self.reserved:
            self.reserved = False
            self.rt.outstanding.count -= 1

    # ---- fed by the exchange ------------------------------------------------------------
    def on_request_body(self, data: bytes) -> None:
        if self.skipped:
            return
        self.body_size += len(data)
        if self.body_size > self.rt.settings.max_body_bytes:
            self.skipped = True
            self.body = []
            self.rt.skipped.inc()
            self._release()
            return
        self.body.append(data)

    def on_request_complete(self) -> None:
        if self.skipped or self.started:
            return
        self.started = True
        rt = self.rt
        rt.sent.inc()
        body = b"".join(self.body)
        self.shadow = self._send(rt.target, body)
        if self.noise:
            self.second = self._send(rt.route.primary, body)

    def on_primary_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.primary.status = status
        self.primary.headers = headers

    def on_primary_body(self, data: bytes) -> None:
        self.primary.on_upstream_body(data)

    def on_primary_complete(self) -> None:
        self.primary_done = True
        self._maybe_compare()

    def abandon(self) -> None:
        self.abandoned = True
        if not self.started:
            self._release()

    # ---- the mirrored request -----------------------------------------------------------
    def _send(self, up: UpstreamRuntime, body: bytes) -> _Collector:
        rt = self.rt
        settings = rt.settings
        collector = _Collector(settings.capture_bytes, self._collected)
        self.pending += 1
        req = self.req
        path = req.rewritten if up.role == "extracted" else req.path
        target = (up.base_path + path).encode("latin-1")
        if req.query and req.query != b"?":
            target += b"?" + req.query
        framing = b"content-length: " + str(len(body)).encode() + b"\r\n" if body else b""
        head = render_request_head(
            req.method_b,
            target,
            up.host_header,
            req.headers,
            (),
            req.extra + SHADOW_MARKER + b": 1\r\n" + framing,
        )
        loop = self.ex.loop
        timer = loop.call_later(settings.timeout, lambda: self._timeout(collector))
        pool = rt.hub.pool_for(up)

        def ready(conn: UpstreamConnection) -> None:
            if collector.finished:
                conn.give_back()
                return
            collector.conn = conn
            conn.send(collector, head, req.method_b == b"HEAD")
            if body:
                conn.write(body)

        def failed(kind: str) -> None:
            collector.on_upstream_error(kind, False)

        collector.timer = timer
        pool.acquire(ready, failed)
        return collector

    def _timeout(self, collector: _Collector) -> None:
        conn = collector.conn
        if conn is not None:
            conn.detach()
        collector.on_upstream_error("timeout", False)

    def _collected(self, collector: _Collector) -> None:
        if collector.timer is not None:
            collector.timer.cancel()
        self.pending -= 1
        if self.pending == 0:
            self._release()
        if collector is self.shadow and collector.error is not None:
            self.rt.failed.inc()
        self._maybe_compare()

    def _maybe_compare(self) -> None:
        if self.pending or not self.primary_done or not self.started:
            return
        if self.abandoned or self.shadow is None or self.shadow.error is not None:
            return
        rt = self.rt
        second = self.second
        if second is None and _same_answer(self.primary, self.shadow, rt.compared_headers):
            rt.matched.inc()  # what compare() would conclude, without building both answers
            return
        policy = rt.settings.compare
        primary = self.primary.response()
        noise = rt.hub.noise_for(rt.route.name)
        if second is not None and second.error is None:
            noise.learn(primary, second.response(), policy)
        diff = compare(primary, self.shadow.response(), policy, noise)
        if diff.matched:
            rt.matched.inc()
            return
        rt.mismatched.inc()
        req = self.req
        record = rt.hub.store.add(
            at=time.time(),
            route=rt.route.name,
            method=req.method,
            path=req.path,
            query=req.query.decode("latin-1") if req.query != b"?" else "",
            request_headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in req.headers],
            primary=primary,
            shadow=self.shadow.response(),
            diff=diff,
        )
        path = rt.hub.jsonl_path
        if path:
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(jsonl_line(record) + "\n")
            except OSError as exc:
                rt.hub.logger.warning("strangler.shadow.jsonl_failed", error=str(exc))


def mismatch_json(hub: ShadowHub, route: str | None, limit: int) -> list[dict[str, object]]:
    return [
        json.loads(json.dumps(r.to_json(), default=str)) for r in hub.store.recent(route, limit)
    ]
