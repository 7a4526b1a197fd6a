"""Circuit breaker: a pure state machine that decides whether a call to an upstream may start.

Theory of operation
-------------------
A breaker is in one of three states (the vocabulary of Resilience4j and Skipper):

    CLOSED ----trip----> OPEN ----open_duration passed----> HALF_OPEN
       ^                   ^                                    |
       |                   +------------ a probe fails ---------+
       +---------------- every probe succeeded -----------------+

- CLOSED lets every call through and feeds each outcome into a sliding window (the last
  `window_size` calls, or the last `window_duration` seconds in one-second buckets) and a
  consecutive-failure counter. It trips when any configured condition holds: `consecutive_failures`
  failures in a row, or, once the window holds at least `minimum_calls` calls, a failure rate or a
  slow-call rate at or above its threshold.
- OPEN rejects every call at once. Nothing times it out actively: the first `allow()` or `state`
  read after `open_duration` seconds moves it to HALF_OPEN (no timers, so the module stays sans-IO).
- HALF_OPEN lets `half_open_probes` calls through. When all of them succeed the breaker closes with
  fresh statistics; the first failed probe reopens it for a new open period. When the breaker
  watches slowness (`slow_call_rate_threshold` set), a slow probe counts as failed: the upstream
  has not recovered yet.

The API is two-step, as Skipper's `allow()`/`done()`: nothing is wrapped around the call, so
streaming stays possible. `allow()` hands out a permit, the breaker's generation number, which
changes on every transition. Each permit must be settled exactly once, with `record()` (an outcome)
or `release()` (abandoned, no outcome). A permit from an older generation is ignored, so a slow call
admitted while closed can neither trip nor close a breaker that has moved on since.

Invariants:
- no I/O and no wall clock: time comes from the injected monotonic `clock`;
- memory is bounded by the policy (a ring of `window_size` outcomes or of one bucket per second);
- `on_transition(old, new)` is called exactly once per transition, after the state has changed.

Reloads: `BreakerPolicy` is a frozen, hashable dataclass, so the runtime keeps a breaker across a
config reload when `old_policy == new_policy` and may key a breaker registry by the policy itself;
no separate key function exists.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any, Final

from strangler.policies import ERROR_KINDS, BreakerPolicy

__all__ = [
    "ERROR_KINDS",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
]

# ERROR_KINDS and BreakerPolicy are re-exported: the policies are validated operator input,
# kept interpreted in strangler.policies.


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_FAILED: Final = 1
_SLOW: Final = 2


class _CountWindow:
    """The last `size` outcomes in a ring, with running totals (O(1) per call)."""

    __slots__ = ("_flags", "_next", "calls", "failures", "slow_calls")

    def __init__(self, size: int) -> None:
        # A list, not a bytearray: the compiled build indexes a list of ints natively.
        self._flags = [0] * size
        self._next = 0
        self.calls = self.failures = self.slow_calls = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        flags = self._flags
        position = self._next
        if self.calls == len(flags):  # full: the oldest outcome leaves the ring
            old = flags[position]
            self.failures -= old & _FAILED
            self.slow_calls -= (old & _SLOW) >> 1
        else:
            self.calls += 1
        flags[position] = (_FAILED if failed else 0) | (_SLOW if slow else 0)
        if failed:
            self.failures += 1
        if slow:
            self.slow_calls += 1
        position += 1
        self._next = 0 if position == len(flags) else position

    def expire(self, now: float) -> None:
        """Count windows do not age."""


class _TimeWindow:
    """Outcomes of the last `ceil(duration)` whole seconds, one bucket per second in a ring."""

    __slots__ = (
        "_bucket_calls",
        "_bucket_failures",
        "_bucket_slow",
        "_head",
        "calls",
        "failures",
        "slow_calls",
    )

    def __init__(self, duration: float) -> None:
        buckets = math.ceil(duration)
        self._bucket_calls = [0] * buckets
        self._bucket_failures = [0] * buckets
        self._bucket_slow = [0] * buckets
        self._head: int | None = None  # the newest second the ring holds
        self.calls = self.failures = self.slow_calls = 0

    def add(self, failed: bool, slow: bool, now: float) -> None:
        index = self.expire(now) % len(self._bucket_calls)
        self._bucket_calls[index] += 1
        self._bucket_failures[index] += failed
        self._bucket_slow[index] += slow
        self.calls += 1
        self.failures += failed
        self.slow_calls += slow

    def expire(self, now: float) -> int:
        """Drop the buckets that fell out of the window by `now`; return the newest second."""
        second = math.floor(now)
        if self._head is None:
            self._head = second
            return second
        if second <= self._head:  # same second (or a clock that stepped back): keep the head
            return self._head
        size = len(self._bucket_calls)
        for stale in range(self._head + 1, min(second, self._head + size) + 1):
            index = stale % size
            self.calls -= self._bucket_calls[index]
            self.failures -= self._bucket_failures[index]
            self.slow_calls -= self._bucket_slow[index]
            self._bucket_calls[index] = self._bucket_failures[index] = self._bucket_slow[index] = 0
        self._head = second
        return second


class CircuitBreaker:
    """One breaker's live state; see the module docstring for the state machine."""

    __slots__ = (
        "_clock",
        "_closed",
        "_consecutive",
        "_consecutive_limit",
        "_count_window",
        "_failure_rate",
        "_generation",
        "_minimum_calls",
        "_on_transition",
        "_opened_at",
        "_policy",
        "_probes_admitted",
        "_probes_succeeded",
        "_slow_call_duration",
        "_slow_call_rate",
        "_state",
        "_window",
        "failure_statuses",
    )

    def __init__(
        self,
        policy: BreakerPolicy,
        clock: Callable[[], float],
        on_transition: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        # The policy's per-call figures as this object's own fields (the policy stays an
        # interpreted dataclass; a compiled build reads its own fields far faster).
        self.failure_statuses: frozenset[int] = policy.failure_statuses
        self._slow_call_duration: float = policy.slow_call_duration
        self._minimum_calls: int = policy.minimum_calls
        self._consecutive_limit: int | None = policy.consecutive_failures
        self._failure_rate: float | None = policy.failure_rate_threshold
        self._slow_call_rate: float | None = policy.slow_call_rate_threshold
        self._count_window = policy.window_type == "count"
        self._state = BreakerState.CLOSED
        self._closed = True  # self._state is BreakerState.CLOSED, without the enum lookup
        self._generation = 0
        self._opened_at = 0.0
        self._consecutive = 0
        self._probes_admitted = 0  # in flight or succeeded, this half-open period
        self._probes_succeeded = 0
        self._window = self._new_window()

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN:
            self._half_open_if_due()
        return self._state

    def allow(self) -> int | None:
        """A permit for one call, or None when the call must be rejected now."""
        if self._closed:
            return self._generation
        state = self._state
        if state is BreakerState.OPEN and not self._half_open_if_due():
            return None
        if self._probes_admitted >= self._policy.half_open_probes:
            return None
        self._probes_admitted += 1
        return self._generation

    def record(self, permit: int, *, failure: bool, duration: float) -> None:
        """Settle a permit with the call's outcome; stale permits are ignored."""
        if permit != self._generation:
            return
        slow = duration > self._slow_call_duration
        if not self._closed:
            # A current permit while not closed can only be a half-open one: OPEN issues none.
            if failure or (slow and self._slow_call_rate is not None):
                self._open()
                return
            self._probes_succeeded += 1
            if self._probes_succeeded >= self._policy.half_open_probes:
                self._close()
            return
        window = self._window
        # A count window does not age: the clock is read only for a time window.
        window.add(failure, slow, 0.0 if self._count_window else self._clock())
        if failure:
            self._consecutive += 1
        else:
            self._consecutive = 0
            if window.calls < self._minimum_calls:
                return  # no rate is evaluated yet, and a success ends any failure streak
        if self._should_trip():
            self._open()

    def release(self, permit: int) -> None:
        """Settle a permit whose call was abandoned without an outcome (returns a probe slot)."""
        if (
            permit == self._generation
            and self._state is BreakerState.HALF_OPEN
            and self._probes_admitted > self._probes_succeeded
        ):
            self._probes_admitted -= 1

    def retry_after(self) -> float:
        """Seconds until the breaker turns half-open; 0 when it is not open."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._policy.open_duration - self._clock())

    def snapshot(self) -> dict[str, Any]:
        """Plain data for the admin API."""
        state = self.state
        now = self._clock()
        window = self._window
        window.expire(now)
        calls = window.calls
        policy = self._policy
        return {
            "state": state.value,
            "generation": self._generation,
            "consecutive_failures": self._consecutive,
            "window": {
                "type": policy.window_type,
                "calls": calls,
                "failures": window.failures,
                "slow_calls": window.slow_calls,
                "failure_rate": 100.0 * window.failures / calls if calls else None,
                "slow_call_rate": 100.0 * window.slow_calls / calls if calls else None,
                "minimum_calls": policy.minimum_calls,
            },
            "half_open": {
                "probes_allowed": policy.half_open_probes,
                "probes_in_flight": self._probes_admitted - self._probes_succeeded,
                "probes_succeeded": self._probes_succeeded,
            },
            "opened_age": now - self._opened_at if state is not BreakerState.CLOSED else None,
            "retry_after": self.retry_after(),
        }

    def _should_trip(self) -> bool:
        limit = self._consecutive_limit
        if limit is not None and self._consecutive >= limit:
            return True
        window = self._window
        calls = window.calls
        if calls < self._minimum_calls:
            return False
        failure_rate = self._failure_rate
        if failure_rate is not None and 100.0 * window.failures >= failure_rate * calls:
            return True
        slow_rate = self._slow_call_rate
        return slow_rate is not None and 100.0 * window.slow_calls >= slow_rate * calls

    def _half_open_if_due(self) -> bool:
        if self._clock() - self._opened_at < self._policy.open_duration:
            return False
        self._probes_admitted = self._probes_succeeded = 0
        self._transition(BreakerState.HALF_OPEN)
        return True

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._transition(BreakerState.OPEN)

    def _close(self) -> None:
        self._consecutive = 0
        self._window = self._new_window()
        self._transition(BreakerState.CLOSED)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._closed = new is BreakerState.CLOSED
        self._generation += 1
        if self._on_transition is not None:
            self._on_transition(old, new)

    def _new_window(self) -> _CountWindow | _TimeWindow:
        if self._policy.window_type == "count":
            return _CountWindow(self._policy.window_size)
        return _TimeWindow(self._policy.window_duration)
