"""Bulkhead: a concurrency limit on an upstream, with an optional bounded queue of waiters.

Pure and callback-based, because the data plane has no future per request: a request that finds
every slot taken hands in a callable, and `release()` of a finishing request passes its slot
straight to the oldest waiter and calls it. How long a waiter may wait is the caller's business: it
arms its own timer (`loop.call_later(policy.max_wait, ...)`) and calls `cancel()` when that fires.

Invariants:
- `active <= max_concurrent` and `waiting <= max_waiting` at all times;
- a waiter is queued only while every slot is taken, so a free slot never sits beside a waiter,
  and waiters are served first in, first out;
- a waiter, once called, holds a slot and must `release()` it like any other holder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from strangler.policies import BulkheadPolicy

__all__ = ["Bulkhead", "BulkheadPolicy"]

Waiter = Callable[[], None]


class Bulkhead:
    """Slots for concurrent calls plus a FIFO of waiters; see the module docstring."""

    __slots__ = ("_active", "_max_concurrent", "_max_waiting", "_waiters")

    def __init__(self, max_concurrent: int, max_waiting: int = 0) -> None:
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {max_concurrent!r}")
        if type(max_waiting) is not int or max_waiting < 0:
            raise ValueError(f"max_waiting must be an integer >= 0, got {max_waiting!r}")
        self._max_concurrent = max_concurrent
        self._max_waiting = max_waiting
        self._active = 0
        # Insertion-ordered: popitem(last=False) serves the oldest, pop(waiter) cancels, both O(1).
        self._waiters: OrderedDict[Waiter, None] = OrderedDict()

    @classmethod
    def from_policy(cls, policy: BulkheadPolicy) -> Bulkhead:
        return cls(policy.max_concurrent, policy.max_waiting)

    @property
    def active(self) -> int:
        """Slots held, including those handed to waiters."""
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def max_concurrent(self) -> int:
        return self._max_concurrent

    @property
    def max_waiting(self) -> int:
        return self._max_waiting

    def try_enter(self) -> bool:
        """Take a slot now if one is free."""
        if self._active >= self._max_concurrent:
            return False
        self._active += 1
        return True

    def enqueue(self, waiter: Waiter) -> bool:
        """Queue `waiter` to be called once it holds a slot; False when the queue is full.

        Only for a full bulkhead (after `try_enter()` returned False): queueing beside a free slot
        would leave the waiter waiting for nothing, so it raises `RuntimeError`. The same waiter
        (by equality) cannot be queued twice, since `cancel()` could not tell the two apart.
        """
        if self._active < self._max_concurrent:
            raise RuntimeError("enqueue() while a slot is free; call try_enter() first")
        if waiter in self._waiters:
            raise ValueError(f"waiter {waiter!r} is already queued")
        if len(self._waiters) >= self._max_waiting:
            return False
        self._waiters[waiter] = None
        return True

    def cancel(self, waiter: Waiter) -> bool:
        """Remove a queued waiter (its wait timed out, or its client left); False if not queued."""
        if waiter not in self._waiters:
            return False
        del self._waiters[waiter]
        return True

    def release(self) -> None:
        """Free a slot, or hand it to the oldest waiter and call that waiter."""
        if self._active == 0:
            raise RuntimeError("release() without a slot held")
        if self._waiters:
            waiter, _ = self._waiters.popitem(last=False)
            waiter()  # the slot passes to the waiter: `active` is unchanged
            return
        self._active -= 1

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the admin API."""
        return {
            "active": self._active,
            "max_concurrent": self._max_concurrent,
            "waiting": len(self._waiters),
            "max_waiting": self._max_waiting,
        }
