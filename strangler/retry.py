"""Retry policy: whether a failed try may be tried again, how long to wait, and a retry budget.

Pure and cheap per request: `retry_decision` and `backoff_delay` are plain functions of their
arguments (randomness is injected), and `RetryBudget` is a pair of counters the data plane bumps.
The timers that wait out a backoff live in the caller (`loop.call_later`).

Invariants:
- a request is tried at most `attempts` times in all;
- a non-idempotent request (POST, PATCH, ...) is retried only when the policy allows it and nothing
  of it reached the upstream (Traefik's rule); a status answer proves it was sent, so such a request
  is never retried on a status;
- retries in flight stay within the budget: `budget_percent` of the requests in flight, but never
  fewer than `min_retry_concurrency` (Envoy's `retry_budget`), so retries cannot multiply the load
  on an upstream that is already failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from strangler.breaker import ERROR_KINDS

__all__ = [
    "IDEMPOTENT_METHODS",
    "RetryBudget",
    "RetryPolicy",
    "backoff_delay",
    "retry_decision",
]

# RFC 9110 section 9.2.2; methods are case-sensitive, so "get" is not GET.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# 2**64 backoff steps exceed any sane backoff_max; the cap keeps huge attempt numbers finite.
_MAX_BACKOFF_DOUBLINGS = 64


def _check_budget(budget_percent: float, min_retry_concurrency: int) -> None:
    if not 0 <= budget_percent <= 100:
        raise ValueError(f"budget_percent must be in [0, 100], got {budget_percent!r}")
    if type(min_retry_concurrency) is not int or min_retry_concurrency < 0:
        raise ValueError(
            f"min_retry_concurrency must be an integer >= 0, got {min_retry_concurrency!r}"
        )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a route retries failed tries; validated on construction. Durations are seconds."""

    attempts: int = 1  # total tries including the first; 1 = no retry
    backoff_base: float = 0.025  # Envoy's default
    backoff_max: float = 0.250
    retry_on: frozenset[str] = frozenset({"refused", "reset", "timeout"})
    retry_statuses: frozenset[int] = frozenset({502, 503, 504})
    non_idempotent: bool = False  # allow retrying POST, PATCH... when nothing reached the upstream
    per_try_timeout: float | None = None
    budget_percent: float = 20.0
    min_retry_concurrency: int = 3

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise ValueError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        if not self.backoff_base > 0:
            raise ValueError(f"backoff_base must be > 0, got {self.backoff_base!r}")
        if not self.backoff_max >= self.backoff_base:
            raise ValueError(
                f"backoff_max ({self.backoff_max!r}) must be >= backoff_base "
                f"({self.backoff_base!r})"
            )
        retry_on = frozenset(self.retry_on)
        unknown = sorted(retry_on - ERROR_KINDS)
        if unknown:
            raise ValueError(
                f"unknown retry_on error kind(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(ERROR_KINDS))})"
            )
        statuses = frozenset(self.retry_statuses)
        bad = sorted((s for s in statuses if type(s) is not int or not 100 <= s <= 599), key=repr)
        if bad:
            raise ValueError(f"retry_statuses must be HTTP statuses 100-599, got {bad!r}")
        if self.per_try_timeout is not None and not self.per_try_timeout > 0:
            raise ValueError(f"per_try_timeout must be > 0 or None, got {self.per_try_timeout!r}")
        _check_budget(self.budget_percent, self.min_retry_concurrency)
        # Accept any set from the loader but keep the policy hashable.
        object.__setattr__(self, "retry_on", retry_on)
        object.__setattr__(self, "retry_statuses", statuses)


def retry_decision(
    policy: RetryPolicy,
    *,
    attempt: int,
    method: str,
    status: int | None,
    error_kind: str | None,
    request_sent: bool,
) -> bool:
    """Whether to try again after try number `attempt` (1 after the first) failed.

    `error_kind` (no usable response) takes precedence over `status`. `request_sent` tells whether
    any byte of the request reached the upstream ("refused" means none did).
    """
    if attempt >= policy.attempts:
        return False
    if error_kind is not None:
        if error_kind not in policy.retry_on:
            return False
    elif status is None or status not in policy.retry_statuses:
        return False
    if method in IDEMPOTENT_METHODS:
        return True
    return policy.non_idempotent and not request_sent and status is None


def backoff_delay(policy: RetryPolicy, attempt: int, rand: Callable[[], float]) -> float:
    """Seconds to wait before the next try after try number `attempt`: exponential, full jitter.

    `rand` returns a float in [0, 1), as `random.random`.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts tries made so far and starts at 1, got {attempt!r}")
    ceiling = math.ldexp(policy.backoff_base, min(attempt - 1, _MAX_BACKOFF_DOUBLINGS))
    return rand() * min(policy.backoff_max, ceiling)


class RetryBudget:
    """Counts requests and retries in flight and admits a retry only within the budget.

    Every `request_started()` is paired with one `request_finished()`, and every successful
    `try_begin_retry()` with one `retry_finished()`; an unpaired finish raises `RuntimeError`,
    since the counts would otherwise drift silently.
    """

    __slots__ = ("_budget_percent", "_in_flight", "_min_retry_concurrency", "_retries_in_flight")

    def __init__(self, budget_percent: float = 20.0, min_retry_concurrency: int = 3) -> None:
        _check_budget(budget_percent, min_retry_concurrency)
        self._budget_percent = budget_percent
        self._min_retry_concurrency = min_retry_concurrency
        self._in_flight = 0
        self._retries_in_flight = 0

    @classmethod
    def from_policy(cls, policy: RetryPolicy) -> RetryBudget:
        return cls(policy.budget_percent, policy.min_retry_concurrency)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def retries_in_flight(self) -> int:
        return self._retries_in_flight

    def request_started(self) -> None:
        self._in_flight += 1

    def request_finished(self) -> None:
        if self._in_flight == 0:
            raise RuntimeError("request_finished() without a matching request_started()")
        self._in_flight -= 1

    def try_begin_retry(self) -> bool:
        """Take a retry slot if the budget allows one now."""
        retries = self._retries_in_flight
        # As Envoy: the share is rounded down. Compared in percent, not as a fraction, so that
        # float error cannot turn 15 requests at 20% into 2.9999 retries.
        if (
            retries >= self._min_retry_concurrency
            and (retries + 1) * 100 > self._in_flight * self._budget_percent
        ):
            return False
        self._retries_in_flight += 1
        return True

    def retry_finished(self) -> None:
        if self._retries_in_flight == 0:
            raise RuntimeError("retry_finished() without a matching try_begin_retry()")
        self._retries_in_flight -= 1
