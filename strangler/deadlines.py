"""One timer handle per client connection, serving every deadline the connection has.

A connection has its own deadline (`header`, `body` or `idle`, one at a time) and the deadline of
the exchange it is serving (response timeout or bulkhead wait). Both ride on a single
`loop.call_at` handle that is moved only when a deadline comes earlier than it: steady keep-alive
traffic creates no handle per request. When the handle fires early (its deadline moved later), it
is re-armed for the earliest pending deadline, and never later than one header timeout ahead, so
the next request's header deadline does not have to move it.

`ConnectionDeadlines` is the base of `strangler.server.ClientConnection`, which says what a passed
deadline means (`_deadline_passed`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strangler.exchange import Exchange

__all__ = ["ConnectionDeadlines"]


class ConnectionDeadlines:
    loop: asyncio.AbstractEventLoop
    closed: bool

    def _init_deadlines(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadline = 0.0
        self.deadline_kind = "idle"
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0  # the handle's when(), without a call per request
        self.ex_owner: Exchange | None = None  # its deadline_passed() runs when due
        self.ex_deadline = 0.0

    # ---- what the connection says ---------------------------------------------------------
    def _deadline_passed(self, kind: str) -> None:
        """The connection's own deadline of `kind` passed (close, or answer 408)."""
        raise NotImplementedError

    def _rearm_horizon(self) -> float:
        """How far ahead the handle may be re-armed at most (the header timeout)."""
        raise NotImplementedError

    # ---- deadlines ------------------------------------------------------------------------
    def _set_deadline(self, kind: str, delay: float, now: float = 0.0) -> None:
        """`delay` seconds from `now` (the loop's time; read here when 0.0)."""
        self.deadline_kind = kind
        if delay <= 0:
            self.deadline = 0.0
            return
        self.deadline = when = (now or self.loop.time()) + delay
        if self.timer is None or self.timer_when > when:
            self._arm_timer(when)

    def arm_exchange(self, owner: Exchange, when: float) -> None:
        """The current exchange's deadline (response or bulkhead wait), on the same handle: the
        exchange's `deadline_passed()` runs when it passes (no bound method per request)."""
        self.ex_owner = owner
        self.ex_deadline = when
        if self.timer is None or self.timer_when > when:
            self._arm_timer(when)

    def disarm_exchange(self, owner: object) -> None:
        if self.ex_owner is owner:
            self.ex_owner = None
            self.ex_deadline = 0.0

    def _arm_timer(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(when, self._on_timer)
        self.timer_when = when

    def _on_timer(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        owner = self.ex_owner
        if owner is not None and now >= self.ex_deadline:
            self.ex_owner = None
            self.ex_deadline = 0.0
            owner.deadline_passed()
            if self._gone():
                return
        if self.deadline and now >= self.deadline:
            self._deadline_passed(self.deadline_kind)
            if self._gone():
                return
        pending = [d for d in (self.deadline, self.ex_deadline) if d]
        if pending:
            self._arm_timer(min(min(pending), now + self._rearm_horizon()))

    def _gone(self) -> bool:
        """Whether the connection closed (a callback may have closed it; mypy cannot tell)."""
        return self.closed

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
