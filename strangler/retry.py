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
from typing import Final

from strangler.policies import RetryPolicy, check_budget

__all__ = [
    "IDEMPOTENT_METHODS",
    "RetryBudget",
    "RetryPolicy",
    "backoff_delay",
    "retry_decision",
]

# RFC 9110 section 9.2.2; methods are case-sensitive, so "get" is not GET.
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# 2**64 backoff steps exceed any sane backoff_max; the cap keeps huge attempt numbers finite.
_MAX_BACKOFF_DOUBLINGS: Final = 64


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
        check_budget(budget_percent, min_retry_concurrency)
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
