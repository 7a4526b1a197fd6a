"""One client request on its way through a route's pipeline: bulkhead, breaker, upstream, retry,
fallback.

The pipeline runs on callbacks. An `Exchange` is created by the client connection once the request
head is parsed and routed; it asks the upstream pool for a connection, streams the request body to
it, streams the response back, and decides what a failure turns into.

Theory of operation:
- An attempt takes, in order, a bulkhead slot of the upstream, a breaker permit of (route, upstream)
  and a pooled connection. Each is returned exactly once, when the attempt ends (`_end_attempt`).
- Until the first response byte is written to the client, a failure may be retried (same upstream,
  after a jittered backoff, within the retry budget) or replayed on the fallback upstream. Both need
  the request body: bodies up to the route's buffer size are kept; a larger body cannot be replayed.
- After the first response byte, a failure can only cut the client connection: a response is never
  padded or merged with another.
- Every timer is a `loop.call_at` handle cancelled when its attempt ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from strangler.retry import IDEMPOTENT_METHODS, backoff_delay, retry_decision
from strangler.upstream import ResponseSink

if TYPE_CHECKING:
    from strangler.request import RequestHead
    from strangler.runtime import RouteRuntime, UpstreamRuntime
    from strangler.server import ClientConnection
    from strangler.shadow import ShadowCapture
    from strangler.upstream import UpstreamConnection

__all__ = ["Exchange"]

_FAILURE_STATUS: Final = {"refused": 502, "reset": 502, "malformed": 502, "timeout": 504}
_CHUNK_END: Final = b"0\r\n\r\n"


class Exchange(ResponseSink):
    """The life of one proxied request; see the module docstring."""

    __slots__ = (
        "_backoff_handle",
        "_bulkhead_up",
        "_canceller",
        "_in_budget",
        "_permit",
        "_retry_held",
        "_waiting_bulkhead",
        "attempt_start",
        "attempts",
        "body_bytes",
        "body_done",
        "chunked_out",
        "client",
        "conn",
        "deadline",
        "done",
        "end",
        "fallback_reason",
        "has_body",
        "head",
        "head_only",
        "kept",
        "loop",
        "method",
        "pending",
        "request_id",
        "response_bytes",
        "response_extra",
        "response_framing",
        "route",
        "sent_any",
        "shadow",
        "start",
        "status",
        "upgrade",
        "upstream",
    )

    def __init__(
        self,
        client: ClientConnection,
        route: RouteRuntime,
        upstream: UpstreamRuntime,
        method: str,
        head: RequestHead,
        request_id: bytes,
        *,
        has_body: bool,
        chunked: bool,
        response_extra: list[tuple[bytes, bytes]],
        upgrade: bool,
    ) -> None:
        self.client = client
        self.route = route
        self.upstream = upstream
        self.method = method
        self.head = head
        self.request_id = request_id
        self.loop = client.loop
        self.start = self.loop.time()
        self.attempt_start = self.start
        self.end = 0.0  # when the upstream's answer ended (0.0 until then)
        self.deadline = self.start + route.timeout_for(upstream)
        self.has_body = has_body
        self.chunked_out = chunked
        self.head_only = method == "HEAD"
        self.response_extra = response_extra
        self.upgrade = upgrade
        self.body_done = not has_body
        self.body_bytes = 0
        self.pending: list[bytes] = []
        keep_limit = route.fallback_buffer if (route.fallback or route.retry_attempts > 1) else 0
        self.kept: list[bytes] | None = [] if keep_limit > 0 or not has_body else None
        self.conn: UpstreamConnection | None = None
        self.attempts = 0
        self.status = 0
        self.response_bytes = 0
        self.response_framing = 0  # 0 none, 1 length, 2 chunked re-encoding, 3 close-delimited
        self.fallback_reason: str | None = None
        self.sent_any = False
        self.done = False
        self.shadow: ShadowCapture | None = None
        self._permit: int | None = None
        self._bulkhead_up: UpstreamRuntime | None = None
        self._waiting_bulkhead: Callable[[], None] | None = None
        self._backoff_handle: asyncio.TimerHandle | None = None
        self._canceller: Callable[[], None] | None = None
        self._in_budget = False  # counted in the route's retry budget as a request in flight
        self._retry_held = False  # holds a retry slot of that budget until the retry ends

    # ---- request side -------------------------------------------------------------------
    def request_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        framed = (b"%x\r\n" % len(data)) + data + b"\r\n" if self.chunked_out else data
        if self.kept is not None:
            if self.body_bytes <= self.route.fallback_buffer:
                self.kept.append(framed)
            else:
                self.kept = None
        if self.shadow is not None:
            self.shadow.on_request_body(data)
        conn = self.conn
        if conn is not None and not self.pending:
            conn.write(framed)
        else:
            self.pending.append(framed)
            if len(self.pending) > 16:
                self.client.pause_reading()

    def request_complete(self) -> None:
        self.body_done = True
        if self.chunked_out:
            if self.kept is not None:
                self.kept.append(_CHUNK_END)
            if self.conn is not None and not self.pending:
                self.conn.write(_CHUNK_END)
            else:
                self.pending.append(_CHUNK_END)
        if self.shadow is not None:
            self.shadow.on_request_complete()

    # ---- attempts -----------------------------------------------------------------------
    def begin(self) -> None:
        self.route.retry_budget.request_started()
        self._in_budget = True
        self._attempt(self.upstream)

    def _attempt(self, up: UpstreamRuntime) -> None:
        if self.done:
            return
        self.upstream = up
        self.attempts += 1
        self.attempt_start = self.start if self.attempts == 1 else self.loop.time()
        bulkhead = up.bulkhead
        if bulkhead is not None:
            if not bulkhead.try_enter():
                if up.bulkhead_wait > 0 and bulkhead.enqueue(self._bulkhead_granted):
                    self._waiting_bulkhead = self._bulkhead_granted
                    self._arm(up.bulkhead_wait)  # deadline_passed: _bulkhead_timeout
                    return
                up.metrics.bulkhead_rejected()
                self._unavailable("bulkhead_full", retry_after=None)
                return
            self._bulkhead_up = up
        self._after_bulkhead()

    def _bulkhead_granted(self) -> None:
        self._waiting_bulkhead = None
        self._disarm()
        self.attempt_start = self.loop.time()  # the try starts now, after its wait
        self._bulkhead_up = self.upstream
        self._after_bulkhead()

    def _bulkhead_timeout(self) -> None:
        up = self.upstream
        if self._waiting_bulkhead is not None and up.bulkhead is not None:
            up.bulkhead.cancel(self._waiting_bulkhead)
            self._waiting_bulkhead = None
        up.metrics.bulkhead_rejected()
        self._unavailable("bulkhead_full", retry_after=None)

    def _after_bulkhead(self) -> None:
        up = self.upstream
        breaker = self.route.breakers.get(up.name)
        if breaker is not None:
            permit = breaker.allow()
            if permit is None:
                self._release_bulkhead()
                self._unavailable("breaker_open", retry_after=breaker.retry_after())
                return
            self._permit = permit
        route = self.route
        timeout = route.timeout_for(up)
        per_try = route.per_try_timeout
        if per_try is not None and per_try < timeout:
            timeout = per_try
        now = self.attempt_start  # set by _attempt just now: no second clock read
        remaining = self.deadline - now
        when = now + min(timeout, max(remaining, 0.0))
        self.client.arm_exchange(self, when)  # deadline_passed: _on_timeout
        conn = up.pool.take_idle()
        if conn is not None:
            self._on_connection(conn)  # the common case: no callbacks bound, no canceller
        else:
            self._canceller = up.pool.connect(self._on_connection, self._on_connect_error)

    def _on_connection(self, conn: UpstreamConnection) -> None:
        self._canceller = None
        if self.done:
            conn.give_back()
            return
        self.conn = conn
        conn.send(self, self.route.render_head(self.head, self.upstream), self.head_only)
        if self.kept is not None and self.attempts > 1:
            for piece in self.kept:
                conn.write(piece)
            self.pending.clear()
        elif self.pending:
            for piece in self.pending:
                conn.write(piece)
            self.pending.clear()
        if self.client.paused:
            self.client.resume_reading()

    def _on_connect_error(self, kind: str) -> None:
        self._canceller = None
        self._failed(kind, response_started=False)

    def _on_timeout(self) -> None:
        if self._canceller is not None:
            self._canceller()
            self._canceller = None
        self._failed("timeout", response_started=self.sent_any)

    # ---- response side (ResponseSink) ---------------------------------------------------
    def on_upstream_head(
        self, conn: UpstreamConnection, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if status >= 500 and not self.sent_any and self._may_retry(None, status):
            self.conn = None
            conn.detach()
            breaker = self.route.breaker_for(self.upstream)
            # A retried status is a breaker failure only when the breaker says so.
            self._record_outcome(
                failure=breaker is not None and breaker.policy.is_failure(status, None)
            )
            self._disarm()
            self._release_bulkhead()  # not _end_attempt: the retry slot just taken is kept
            self.route.metrics.retried(self.upstream.name)
            self._schedule_retry()
            return
        self.status = status
        if self.shadow is not None:
            self.shadow.on_primary_head(status, headers)
        self.client.send_response_head(self, status, headers)

    def on_upstream_body(self, data: bytes) -> None:
        self.response_bytes += len(data)
        if self.shadow is not None:
            self.shadow.on_primary_body(data)
        self.client.send_response_body(self, data)

    def on_upstream_complete(self) -> None:
        self.conn = None
        self.end = end = self.loop.time()  # read once: the breaker, metrics and access log
        permit = self._permit
        if permit is not None:
            self._permit = None
            breaker = self.route.breakers.get(self.upstream.name)
            if breaker is not None:
                breaker.record(
                    permit,
                    failure=self.status in breaker.failure_statuses,
                    duration=end - self.attempt_start,
                )
        # _end_attempt's disarm and retry release are part of _finish below.
        if self._bulkhead_up is not None:
            self._release_bulkhead()
        if self.shadow is not None:
            self.shadow.on_primary_complete()
        self._finish()
        self.client.response_complete(self)

    def on_upstream_error(self, kind: str, response_started: bool) -> None:
        self.conn = None
        self._failed(kind, response_started=response_started or self.sent_any)

    def on_upstream_upgrade(self, conn: UpstreamConnection, rest: bytes) -> None:
        self.conn = None
        self._record_outcome(failure=False)
        self._end_attempt()
        self._finish()
        self.client.start_tunnel(self, conn, rest)

    def flush_output(self) -> None:
        self.client.flush_out()

    def pause_client_reading(self) -> None:
        self.client.pause_reading()

    def resume_client_reading(self) -> None:
        self.client.resume_reading()

    # ---- failures -----------------------------------------------------------------------
    def _failed(self, kind: str, *, response_started: bool) -> None:
        if self.done:
            return
        up = self.upstream
        up.metrics.error(self.route.name, kind)
        self._record_outcome(failure=True, kind=kind)
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.detach()
        self._end_attempt()
        if response_started:
            self._finish()
            self.client.abort_response(self)
            return
        if self._may_retry(kind, None):
            self.route.metrics.retried(up.name)
            self._schedule_retry()
            return
        self._fallback_or_error(kind, kind)

    def _unavailable(self, reason: str, retry_after: float | None) -> None:
        """The upstream refused this attempt locally (breaker open, bulkhead full)."""
        self._disarm()
        fallback = self.route.fallback_for(self.upstream)
        # On the first attempt nothing of the request reached any upstream yet, so sending it to
        # the fallback is not a replay: every method may go, with its body still pending.
        unsent = self.attempts == 1 and not self.upgrade
        if fallback is not None and (unsent or self._can_replay_to_fallback()):
            self._go_fallback(fallback, reason)
            return
        self._finish()
        extra = []
        if retry_after is not None:
            extra.append((b"retry-after", str(max(1, int(retry_after + 0.999))).encode()))
        error = "circuit_open" if reason == "breaker_open" else "bulkhead_full"
        self.client.send_error(self, 503, error, route=self.route.name, kind=None, extra=extra)

    def _fallback_or_error(self, reason: str, kind: str) -> None:
        fallback = self.route.fallback_for(self.upstream)
        if fallback is not None and self._can_replay_to_fallback():
            self._go_fallback(fallback, reason)
            return
        self._finish()
        status = _FAILURE_STATUS.get(kind, 502)
        error = "gateway_timeout" if status == 504 else "bad_gateway"
        self.client.send_error(self, status, error, route=self.route.name, kind=kind)

    def _can_replay_to_fallback(self) -> bool:
        if self.method not in IDEMPOTENT_METHODS and not self.route.fallback_non_idempotent:
            return False
        if self.has_body and self.body_bytes > 0 and self.kept is None:
            return False
        return not self.upgrade

    def _go_fallback(self, fallback: UpstreamRuntime, reason: str) -> None:
        self.route.metrics.fell_back(self.upstream.name, fallback.name, reason)
        self.fallback_reason = reason
        self.deadline = self.loop.time() + self.route.timeout_for(fallback)
        self._attempt(fallback)

    def _may_retry(self, kind: str | None, status: int | None) -> bool:
        policy = self.route.retry
        if policy.attempts <= self.attempts or self.upgrade:
            return False
        request_sent = kind != "refused"
        if not retry_decision(
            policy,
            attempt=self.attempts,
            method=self.method,
            status=status,
            error_kind=kind,
            request_sent=request_sent,
        ):
            return False
        if self.has_body and self.kept is None:
            return False
        if self.loop.time() >= self.deadline:
            return False  # the route's timeout bounds every try: none starts after it
        # This try is over: its own retry slot (if it was a retry) goes back before asking again.
        self._release_retry()
        if not self.route.retry_budget.try_begin_retry():
            return False
        self._retry_held = True
        return True

    def _schedule_retry(self) -> None:
        delay = backoff_delay(self.route.retry, self.attempts, random.random)
        up = self.upstream

        def go() -> None:
            self._backoff_handle = None
            self._attempt(up)

        self._backoff_handle = self.loop.call_later(delay, go)

    # ---- bookkeeping --------------------------------------------------------------------
    def _record_outcome(self, *, failure: bool, kind: str | None = None) -> None:
        permit = self._permit
        if permit is None:
            return
        self._permit = None
        breaker = self.route.breaker_for(self.upstream)
        if breaker is None:
            return
        if kind is not None and not breaker.policy.is_failure(None, kind):
            failure = False
        breaker.record(permit, failure=failure, duration=self.loop.time() - self.attempt_start)

    def _release_bulkhead(self) -> None:
        up = self._bulkhead_up
        if up is not None:
            self._bulkhead_up = None
            if up.bulkhead is not None:
                up.bulkhead.release()

    def _arm(self, delay: float) -> None:
        # The client connection's single timer carries this deadline (see arm_exchange).
        self.client.arm_exchange(self, self.loop.time() + delay)

    def deadline_passed(self) -> None:
        """The deadline armed on the client connection passed: the bulkhead wait's, while
        waiting for a slot, else the try's."""
        if self._waiting_bulkhead is not None:
            self._bulkhead_timeout()
        else:
            self._on_timeout()

    def _disarm(self) -> None:
        self.client.disarm_exchange(self)

    def _release_retry(self) -> None:
        if self._retry_held:
            self._retry_held = False
            self.route.retry_budget.retry_finished()

    def _end_attempt(self) -> None:
        self._disarm()
        self._release_bulkhead()
        self._release_retry()

    def _finish(self) -> None:
        self.done = True
        self.client.disarm_exchange(self)  # _disarm, inline
        if self.shadow is not None and not self.body_done:
            self.shadow.abandon()  # answered before the body ended: nothing complete to mirror
        if self._retry_held:
            self._release_retry()
        if self._in_budget:
            self._in_budget = False
            self.route.retry_budget.request_finished()

    def abandon(self) -> None:
        """The client went away: give back everything this exchange holds."""
        if self._backoff_handle is not None:
            self._backoff_handle.cancel()
            self._backoff_handle = None
        if self._canceller is not None:
            self._canceller()
            self._canceller = None
        if self._waiting_bulkhead is not None and self.upstream.bulkhead is not None:
            self.upstream.bulkhead.cancel(self._waiting_bulkhead)
            self._waiting_bulkhead = None
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.detach()
        if self._permit is not None:
            breaker = self.route.breaker_for(self.upstream)
            if breaker is not None:
                breaker.release(self._permit)
            self._permit = None
        self._end_attempt()
        self._finish()
        if self.shadow is not None:
            self.shadow.abandon()
