from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strangler.retry import (
    IDEMPOTENT_METHODS,
    RetryBudget,
    RetryPolicy,
    backoff_delay,
    retry_decision,
)

THREE_TRIES = RetryPolicy(attempts=3)
THREE_TRIES_ANY_METHOD = RetryPolicy(attempts=3, non_idempotent=True)

# (id, policy, attempt, method, status, error_kind, request_sent, expected)
DECISIONS: list[tuple[str, RetryPolicy, int, str, int | None, str | None, bool, bool]] = [
    ("default-policy-never-retries", RetryPolicy(), 1, "GET", None, "refused", False, False),
    ("get-refused", THREE_TRIES, 1, "GET", None, "refused", False, True),
    ("get-reset", THREE_TRIES, 1, "GET", None, "reset", True, True),
    ("get-timeout", THREE_TRIES, 2, "GET", None, "timeout", True, True),
    ("get-malformed-not-in-retry-on", THREE_TRIES, 1, "GET", None, "malformed", True, False),
    ("get-502", THREE_TRIES, 1, "GET", 502, None, True, True),
    ("get-503", THREE_TRIES, 1, "GET", 503, None, True, True),
    ("get-504", THREE_TRIES, 1, "GET", 504, None, True, True),
    ("get-500-not-retryable", THREE_TRIES, 1, "GET", 500, None, True, False),
    ("get-200-not-a-failure", THREE_TRIES, 1, "GET", 200, None, True, False),
    ("no-status-no-error", THREE_TRIES, 1, "GET", None, None, False, False),
    ("attempts-used-up", THREE_TRIES, 3, "GET", None, "refused", False, False),
    ("beyond-attempts", THREE_TRIES, 4, "GET", 503, None, True, False),
    ("put-idempotent", THREE_TRIES, 1, "PUT", 503, None, True, True),
    ("delete-idempotent", THREE_TRIES, 1, "DELETE", None, "reset", True, True),
    ("head-idempotent", THREE_TRIES, 1, "HEAD", None, "timeout", True, True),
    ("methods-are-case-sensitive", THREE_TRIES, 1, "get", None, "refused", False, False),
    ("post-refused-not-allowed", THREE_TRIES, 1, "POST", None, "refused", False, False),
    ("post-refused-allowed", THREE_TRIES_ANY_METHOD, 1, "POST", None, "refused", False, True),
    ("patch-refused-allowed", THREE_TRIES_ANY_METHOD, 1, "PATCH", None, "refused", False, True),
    ("post-reset-after-send", THREE_TRIES_ANY_METHOD, 1, "POST", None, "reset", True, False),
    ("post-timeout-after-send", THREE_TRIES_ANY_METHOD, 1, "POST", None, "timeout", True, False),
    ("post-reset-before-send", THREE_TRIES_ANY_METHOD, 1, "POST", None, "reset", False, True),
    ("post-status-never", THREE_TRIES_ANY_METHOD, 1, "POST", 503, None, True, False),
    ("post-status-never-even-unsent", THREE_TRIES_ANY_METHOD, 1, "POST", 503, None, False, False),
    (
        "error-kind-wins-over-status",
        RetryPolicy(attempts=2, retry_on=frozenset()),
        1,
        "GET",
        503,
        "reset",
        True,
        False,
    ),
    (
        "custom-statuses",
        RetryPolicy(attempts=2, retry_statuses=frozenset({429})),
        1,
        "GET",
        429,
        None,
        True,
        True,
    ),
]


@pytest.mark.parametrize(
    ("policy", "attempt", "method", "status", "error_kind", "request_sent", "expected"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_retry_decision(
    policy: RetryPolicy,
    attempt: int,
    method: str,
    status: int | None,
    error_kind: str | None,
    request_sent: bool,
    expected: bool,
) -> None:
    decision = retry_decision(
        policy,
        attempt=attempt,
        method=method,
        status=status,
        error_kind=error_kind,
        request_sent=request_sent,
    )
    assert decision is expected


def test_idempotent_methods() -> None:
    assert {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"} == IDEMPOTENT_METHODS
    assert "POST" not in IDEMPOTENT_METHODS
    assert "PATCH" not in IDEMPOTENT_METHODS


# --- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, 1.0, 0.025),
        (2, 1.0, 0.050),
        (3, 1.0, 0.100),
        (4, 1.0, 0.200),
        (5, 1.0, 0.250),
        (50, 1.0, 0.250),
        (10_000, 1.0, 0.250),
        (1, 0.0, 0.0),
        (3, 0.5, 0.050),
        (5, 0.5, 0.125),
    ],
    ids=[
        "first-retry-base",
        "doubles",
        "doubles-again",
        "below-max",
        "capped-at-max",
        "large-attempt-capped",
        "huge-attempt-does-not-overflow",
        "zero-jitter",
        "half-jitter",
        "half-jitter-capped",
    ],
)
def test_backoff_delay(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(RetryPolicy(), attempt, fixed(rand)) == pytest.approx(expected)


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def test_backoff_stays_within_bounds_for_any_jitter() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=1.0)
    for attempt in range(1, 20):
        ceiling = min(1.0, 0.1 * 2 ** (attempt - 1))
        for rand in (0.0, 0.3, 0.999999):
            assert 0.0 <= backoff_delay(policy, attempt, fixed(rand)) <= ceiling


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        backoff_delay(RetryPolicy(), 0, lambda: 0.5)


# --- budget ----------------------------------------------------------------------------------


def start(budget: RetryBudget, requests: int) -> None:
    for _ in range(requests):
        budget.request_started()


def retries_admitted(budget: RetryBudget) -> int:
    admitted = 0
    while budget.try_begin_retry():
        admitted += 1
    return admitted


@pytest.mark.parametrize(
    ("percent", "floor", "requests", "expected"),
    [
        (20.0, 3, 0, 3),
        (20.0, 3, 5, 3),
        (20.0, 3, 15, 3),
        (20.0, 3, 20, 4),
        (20.0, 3, 100, 20),
        (20.0, 3, 109, 21),
        (20.0, 0, 4, 0),
        (20.0, 0, 5, 1),
        (20.0, 0, 0, 0),
        (0.0, 2, 100, 2),
        (100.0, 0, 7, 7),
    ],
    ids=[
        "floor-without-requests",
        "floor-above-percent",
        "percent-equals-floor",
        "percent-above-floor",
        "percent-of-many",
        "share-rounds-down",
        "no-floor-share-below-one-retry",
        "no-floor-share-of-one-retry",
        "no-floor-no-requests",
        "zero-percent-keeps-floor",
        "hundred-percent",
    ],
)
def test_budget_limit(percent: float, floor: int, requests: int, expected: int) -> None:
    budget = RetryBudget(percent, floor)
    start(budget, requests)
    assert retries_admitted(budget) == expected
    assert budget.retries_in_flight == expected
    assert budget.in_flight == requests


def test_finished_retry_frees_budget() -> None:
    budget = RetryBudget(20.0, 3)
    assert retries_admitted(budget) == 3
    budget.retry_finished()
    assert budget.try_begin_retry()
    assert not budget.try_begin_retry()


def test_finished_requests_shrink_the_budget() -> None:
    budget = RetryBudget(20.0, 1)
    start(budget, 10)
    assert retries_admitted(budget) == 2
    budget.retry_finished()
    budget.retry_finished()
    for _ in range(6):
        budget.request_finished()
    assert budget.in_flight == 4
    assert retries_admitted(budget) == 1


@pytest.mark.parametrize(
    ("finish", "message"),
    [
        (RetryBudget.request_finished, "request_finished"),
        (RetryBudget.retry_finished, "retry_finished"),
    ],
    ids=["request", "retry"],
)
def test_unpaired_finish_raises(finish: Any, message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        finish(RetryBudget())


def test_budget_from_policy() -> None:
    budget = RetryBudget.from_policy(RetryPolicy(budget_percent=50.0, min_retry_concurrency=1))
    start(budget, 6)
    assert retries_admitted(budget) == 3


# --- policy validation -----------------------------------------------------------------------

INVALID_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"attempts": 0}, "attempts must be an integer >= 1"),
    ({"attempts": 2.0}, "attempts must be an integer >= 1"),
    ({"attempts": True}, "attempts must be an integer >= 1"),
    ({"backoff_base": 0}, "backoff_base must be > 0"),
    ({"backoff_max": 0.01}, r"backoff_max \(0.01\) must be >= backoff_base \(0.025\)"),
    (
        {"retry_on": frozenset({"timout"})},
        r"unknown retry_on error kind\(s\) 'timout' \(known: malformed, refused, reset, timeout\)",
    ),
    ({"retry_statuses": frozenset({99})}, r"retry_statuses must be HTTP statuses 100-599"),
    ({"per_try_timeout": 0}, "per_try_timeout must be > 0 or None"),
    ({"budget_percent": -1}, r"budget_percent must be in \[0, 100\]"),
    ({"budget_percent": 101}, r"budget_percent must be in \[0, 100\]"),
    ({"min_retry_concurrency": -1}, "min_retry_concurrency must be an integer >= 0"),
]


@pytest.mark.parametrize(
    ("fields", "message"),
    INVALID_POLICIES,
    ids=[",".join(f"{k}={v}" for k, v in fields.items()) for fields, _ in INVALID_POLICIES],
)
def test_policy_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**fields)


def test_budget_validation() -> None:
    with pytest.raises(ValueError, match="budget_percent"):
        RetryBudget(150.0, 3)


def test_policy_normalises_sets_and_stays_hashable() -> None:
    policy = RetryPolicy(retry_on={"reset"}, retry_statuses={503})  # type: ignore[arg-type]
    assert policy == RetryPolicy(retry_on=frozenset({"reset"}), retry_statuses=frozenset({503}))
    assert isinstance(policy.retry_on, frozenset)
    assert hash(policy) == hash(
        RetryPolicy(retry_on=frozenset({"reset"}), retry_statuses=frozenset({503}))
    )
