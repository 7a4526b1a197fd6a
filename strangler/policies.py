"""Resilience policies as operators write them: breaker, retry and bulkhead settings.

Frozen, hashable dataclasses that validate themselves on construction, with messages naming the
key and the value (the loader reports them at the file and line of the section). They are read
when a config loads, not per request, and stay interpreted in a compiled build (setup.py): a
compiled constructor would refuse a wrong type with a bare TypeError before these checks ran.
The engines that apply them per request are `strangler.breaker`, `strangler.retry` and
`strangler.bulkhead`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ERROR_KINDS",
    "BreakerPolicy",
    "BulkheadPolicy",
    "RetryPolicy",
    "check_budget",
]

# Why a call failed without a usable response; shared with the retry policy.
ERROR_KINDS = frozenset({"refused", "reset", "timeout", "malformed"})
_CONNECTION_ERROR_KINDS = frozenset({"refused", "reset", "malformed"})
_WINDOW_TYPES = ("count", "time")
_MAX_WINDOW_SIZE = 100_000  # bounds the count ring's memory
_MAX_WINDOW_DURATION = 3600.0  # bounds the time ring's memory (one bucket per second)


def _check_percent(name: str, value: float | None) -> None:
    if value is not None and not 0 < value <= 100:
        raise ValueError(f"{name} must be a percentage in (0, 100], got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker trips and how it recovers; validated on construction."""

    consecutive_failures: int | None = 5
    failure_rate_threshold: float | None = None  # percent
    slow_call_rate_threshold: float | None = None  # percent
    slow_call_duration: float = 5.0  # seconds; strictly slower calls are slow
    window_type: str = "count"  # "count" or "time"
    window_size: int = 20  # calls, for the count window
    window_duration: float = 30.0  # seconds, for the time window (one-second resolution)
    minimum_calls: int = 10
    open_duration: float = 30.0
    half_open_probes: int = 1
    failure_statuses: frozenset[int] = frozenset(range(500, 600))
    count_connection_errors: bool = True  # refused, reset and malformed count as failures
    count_timeouts: bool = True

    def __post_init__(self) -> None:
        if self.consecutive_failures is not None and (
            type(self.consecutive_failures) is not int or self.consecutive_failures < 1
        ):
            raise ValueError(
                f"consecutive_failures must be an integer >= 1 or None, "
                f"got {self.consecutive_failures!r}"
            )
        _check_percent("failure_rate_threshold", self.failure_rate_threshold)
        _check_percent("slow_call_rate_threshold", self.slow_call_rate_threshold)
        if (
            self.consecutive_failures is None
            and self.failure_rate_threshold is None
            and self.slow_call_rate_threshold is None
        ):
            raise ValueError(
                "a breaker needs at least one of consecutive_failures, "
                "failure_rate_threshold, slow_call_rate_threshold"
            )
        if not self.slow_call_duration > 0:
            raise ValueError(f"slow_call_duration must be > 0, got {self.slow_call_duration!r}")
        if self.window_type not in _WINDOW_TYPES:
            raise ValueError(
                f"unknown window_type {self.window_type!r} (known: {', '.join(_WINDOW_TYPES)})"
            )
        if type(self.window_size) is not int or not 1 <= self.window_size <= _MAX_WINDOW_SIZE:
            raise ValueError(
                f"window_size must be an integer in [1, {_MAX_WINDOW_SIZE}], "
                f"got {self.window_size!r}"
            )
        if not 1 <= self.window_duration <= _MAX_WINDOW_DURATION:
            raise ValueError(
                f"window_duration must be in [1, {_MAX_WINDOW_DURATION:g}] seconds, "
                f"got {self.window_duration!r}"
            )
        if type(self.minimum_calls) is not int or self.minimum_calls < 1:
            raise ValueError(f"minimum_calls must be an integer >= 1, got {self.minimum_calls!r}")
        rates_set = (
            self.failure_rate_threshold is not None or self.slow_call_rate_threshold is not None
        )
        if rates_set and self.window_type == "count" and self.minimum_calls > self.window_size:
            raise ValueError(
                f"minimum_calls ({self.minimum_calls}) exceeds window_size ({self.window_size}): "
                "rates would never be evaluated"
            )
        if not self.open_duration > 0:
            raise ValueError(f"open_duration must be > 0, got {self.open_duration!r}")
        if type(self.half_open_probes) is not int or self.half_open_probes < 1:
            raise ValueError(
                f"half_open_probes must be an integer >= 1, got {self.half_open_probes!r}"
            )
        statuses = frozenset(self.failure_statuses)
        bad = sorted((s for s in statuses if type(s) is not int or not 100 <= s <= 599), key=repr)
        if bad:
            raise ValueError(f"failure_statuses must be HTTP statuses 100-599, got {bad!r}")
        # Accept any set from the loader but keep the policy hashable.
        object.__setattr__(self, "failure_statuses", statuses)

    def is_failure(self, status: int | None, error_kind: str | None) -> bool:
        """Whether one call's outcome counts against the upstream.

        An error kind (the call produced no usable response) takes precedence over a status.
        """
        if error_kind is not None:
            if error_kind == "timeout":
                return self.count_timeouts
            if error_kind in _CONNECTION_ERROR_KINDS:
                return self.count_connection_errors
            raise ValueError(
                f"unknown error kind {error_kind!r} (known: {', '.join(sorted(ERROR_KINDS))})"
            )
        return status is not None and status in self.failure_statuses


def check_budget(budget_percent: float, min_retry_concurrency: int) -> None:
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
        check_budget(self.budget_percent, self.min_retry_concurrency)
        # Accept any set from the loader but keep the policy hashable.
        object.__setattr__(self, "retry_on", retry_on)
        object.__setattr__(self, "retry_statuses", statuses)


@dataclass(frozen=True, slots=True)
class BulkheadPolicy:
    """An upstream's concurrency limit (Resilience4j's maxConcurrentCalls and maxWaitDuration).

    `max_wait` (seconds) and `max_waiting` go together: both zero rejects at once when full, both
    positive queues up to `max_waiting` requests for at most `max_wait` seconds each.
    """

    max_concurrent: int = 1000
    max_wait: float = 0.0
    max_waiting: int = 0

    def __post_init__(self) -> None:
        if type(self.max_concurrent) is not int or self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an integer >= 1, got {self.max_concurrent!r}")
        if not self.max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {self.max_wait!r}")
        if type(self.max_waiting) is not int or self.max_waiting < 0:
            raise ValueError(f"max_waiting must be an integer >= 0, got {self.max_waiting!r}")
        if (self.max_wait > 0) != (self.max_waiting > 0):
            raise ValueError(
                f"max_wait ({self.max_wait!r}) and max_waiting ({self.max_waiting!r}) must both "
                "be zero (no queue) or both be positive (a queue with a wait limit)"
            )
