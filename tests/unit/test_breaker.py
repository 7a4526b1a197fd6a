from __future__ import annotations

from typing import Any

import pytest

from strangler.breaker import BreakerPolicy, BreakerState, CircuitBreaker

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Harness:
    """A breaker on a fake clock that remembers its transitions."""

    def __init__(self, **policy: Any) -> None:
        self.clock = FakeClock()
        self.transitions: list[tuple[BreakerState, BreakerState]] = []
        self.breaker = CircuitBreaker(
            BreakerPolicy(**policy),
            self.clock,
            on_transition=lambda old, new: self.transitions.append((old, new)),
        )

    def call(self, *, failure: bool, duration: float = 0.01) -> None:
        permit = self.breaker.allow()
        assert permit is not None, "call rejected"
        self.breaker.record(permit, failure=failure, duration=duration)

    def calls(self, pattern: str, duration: float = 0.01) -> None:
        """'F' a failure, '.' a success, 'S' a slow success."""
        for mark in pattern:
            self.call(failure=mark == "F", duration=10.0 if mark == "S" else duration)

    def trip(self) -> None:
        while self.breaker.state is CLOSED:
            self.call(failure=True)


# --- tripping while closed -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "pattern", "expected"),
    [
        ({"consecutive_failures": 3}, "FF", CLOSED),
        ({"consecutive_failures": 3}, "FFF", OPEN),
        ({"consecutive_failures": 3}, "FF.FF", CLOSED),
        ({"consecutive_failures": 3}, "FF.FFF", OPEN),
        ({"consecutive_failures": 1}, "F", OPEN),
        (
            {"consecutive_failures": None, "failure_rate_threshold": 50, "minimum_calls": 4},
            "FFF",
            CLOSED,
        ),
        (
            {"consecutive_failures": None, "failure_rate_threshold": 50, "minimum_calls": 4},
            "F.F.",
            OPEN,
        ),
        (
            {"consecutive_failures": None, "failure_rate_threshold": 50, "minimum_calls": 4},
            "F...",
            CLOSED,
        ),
        (
            {
                "consecutive_failures": None,
                "failure_rate_threshold": 50,
                "minimum_calls": 4,
                "window_size": 4,
            },
            "......F.F",
            OPEN,
        ),
        (
            {
                "consecutive_failures": None,
                "failure_rate_threshold": 50,
                "minimum_calls": 4,
                "window_size": 20,
            },
            "......F.F",
            CLOSED,
        ),
        (
            {"consecutive_failures": None, "slow_call_rate_threshold": 50, "minimum_calls": 4},
            "S.S.",
            OPEN,
        ),
        (
            {"consecutive_failures": None, "slow_call_rate_threshold": 50, "minimum_calls": 4},
            "S...",
            CLOSED,
        ),
        (
            {"consecutive_failures": None, "slow_call_rate_threshold": 100, "minimum_calls": 2},
            "SS",
            OPEN,
        ),
    ],
    ids=[
        "consecutive-below-threshold",
        "consecutive-at-threshold",
        "success-resets-consecutive",
        "consecutive-after-reset",
        "single-failure-threshold",
        "rate-waits-for-minimum-calls",
        "rate-at-threshold-opens",
        "rate-below-threshold",
        "narrow-count-window-forgets-old-successes",
        "wide-count-window-remembers-successes",
        "slow-rate-at-threshold-opens",
        "slow-rate-below-threshold",
        "slow-rate-100-percent",
    ],
)
def test_trip_conditions(policy: dict[str, Any], pattern: str, expected: BreakerState) -> None:
    h = Harness(**policy)
    h.calls(pattern)
    assert h.breaker.state is expected


def test_slow_duration_must_be_exceeded_not_reached() -> None:
    h = Harness(
        consecutive_failures=None,
        slow_call_rate_threshold=50,
        slow_call_duration=1.0,
        minimum_calls=2,
    )
    h.calls("..", duration=1.0)
    assert h.breaker.state is CLOSED
    h.calls("..", duration=1.001)
    assert h.breaker.state is OPEN


def test_slow_failures_count_toward_both_rates() -> None:
    h = Harness(consecutive_failures=None, slow_call_rate_threshold=50, minimum_calls=2)
    h.call(failure=True, duration=10.0)
    h.call(failure=False)
    assert h.breaker.state is OPEN


def test_count_window_ring_keeps_the_last_calls() -> None:
    h = Harness(window_size=4)
    h.calls("SFS..S")
    window = h.breaker.snapshot()["window"]
    assert (window["calls"], window["failures"], window["slow_calls"]) == (4, 0, 2)
    h.calls("FF")
    window = h.breaker.snapshot()["window"]
    assert (window["calls"], window["failures"], window["slow_calls"]) == (4, 2, 1)


TIME_RATE = {
    "consecutive_failures": None,
    "failure_rate_threshold": 50,
    "minimum_calls": 4,
    "window_type": "time",
    "window_duration": 10.0,
}


def test_time_window_rate_opens_within_the_window() -> None:
    h = Harness(**TIME_RATE)
    for mark in "F.F.":
        h.calls(mark)
        h.clock.advance(2.0)
    assert h.breaker.state is OPEN


def test_time_window_old_buckets_expire() -> None:
    h = Harness(**TIME_RATE)
    h.calls("FFF")
    h.clock.advance(11.0)  # the three failures fall out of the window
    h.calls("....")
    assert h.breaker.state is CLOSED
    assert h.breaker.snapshot()["window"] | {"type": "time"} == {
        "type": "time",
        "calls": 4,
        "failures": 0,
        "slow_calls": 0,
        "failure_rate": 0.0,
        "slow_call_rate": 0.0,
        "minimum_calls": 4,
    }


def test_time_window_expires_partially() -> None:
    h = Harness(**TIME_RATE)
    h.calls("FF")  # second 1000
    h.clock.advance(5.0)
    h.calls("F")  # second 1005
    h.clock.advance(5.0)  # second 1010: the bucket of 1000 has left the 10-second window
    h.calls(".")
    window = h.breaker.snapshot()["window"]
    assert (window["calls"], window["failures"]) == (2, 1)
    assert h.breaker.state is CLOSED


def test_time_window_snapshot_expires_without_new_calls() -> None:
    h = Harness(**TIME_RATE)
    h.calls("F.")
    h.clock.advance(1000.0)
    assert h.breaker.snapshot()["window"]["calls"] == 0


# --- open, half-open and back ----------------------------------------------------------------


def test_open_rejects_until_open_duration_then_half_opens() -> None:
    h = Harness(consecutive_failures=2, open_duration=30.0)
    h.calls("FF")
    assert h.breaker.allow() is None
    assert h.breaker.retry_after() == 30.0
    h.clock.advance(29.5)
    assert h.breaker.allow() is None
    assert h.breaker.retry_after() == 0.5
    h.clock.advance(0.5)
    assert h.breaker.state is HALF_OPEN
    assert h.breaker.retry_after() == 0.0
    assert h.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_allow_turns_open_into_half_open_lazily() -> None:
    h = Harness(consecutive_failures=1, open_duration=5.0)
    h.calls("F")
    h.clock.advance(5.0)
    assert h.breaker.allow() is not None
    assert h.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_half_open_admits_exactly_the_probe_count() -> None:
    h = Harness(consecutive_failures=1, half_open_probes=3)
    h.trip()
    h.clock.advance(30.0)
    permits = [h.breaker.allow() for _ in range(3)]
    assert None not in permits
    assert h.breaker.allow() is None
    # A success frees no slot: only N probes are let through per half-open period.
    h.breaker.record(permits[0], failure=False, duration=0.01)  # type: ignore[arg-type]
    assert h.breaker.allow() is None
    assert h.breaker.snapshot()["half_open"] == {
        "probes_allowed": 3,
        "probes_in_flight": 2,
        "probes_succeeded": 1,
    }


def test_all_probes_succeed_closes_with_fresh_statistics() -> None:
    h = Harness(consecutive_failures=3, half_open_probes=2)
    h.trip()
    h.clock.advance(30.0)
    first, second = h.breaker.allow(), h.breaker.allow()
    assert first is not None and second is not None
    h.breaker.record(first, failure=False, duration=0.01)
    assert h.breaker.state is HALF_OPEN
    h.breaker.record(second, failure=False, duration=0.01)
    assert h.breaker.state is CLOSED
    assert h.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    snapshot = h.breaker.snapshot()
    assert snapshot["consecutive_failures"] == 0
    assert snapshot["window"]["calls"] == 0
    assert snapshot["opened_age"] is None
    h.calls("FF")
    assert h.breaker.state is CLOSED  # the count starts again from zero


def test_failed_probe_reopens_for_a_new_open_period() -> None:
    h = Harness(consecutive_failures=1, half_open_probes=2, open_duration=10.0)
    h.trip()
    h.clock.advance(10.0)
    first, second = h.breaker.allow(), h.breaker.allow()
    assert first is not None and second is not None
    h.clock.advance(3.0)
    h.breaker.record(first, failure=True, duration=3.0)
    assert h.breaker.state is OPEN
    assert h.breaker.retry_after() == 10.0
    # The other probe's late success belongs to the previous period and changes nothing.
    h.breaker.record(second, failure=False, duration=3.0)
    assert h.breaker.state is OPEN
    assert h.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN)]
    h.clock.advance(9.9)
    assert h.breaker.allow() is None
    h.clock.advance(0.1)
    assert h.breaker.state is HALF_OPEN


@pytest.mark.parametrize(
    ("slow_rate", "expected"),
    [(None, CLOSED), (50.0, OPEN)],
    ids=["slow-probe-succeeds-without-slow-rate", "slow-probe-fails-when-slowness-watched"],
)
def test_slow_probe(slow_rate: float | None, expected: BreakerState) -> None:
    h = Harness(consecutive_failures=1, slow_call_rate_threshold=slow_rate, minimum_calls=1)
    h.trip()
    h.clock.advance(30.0)
    h.call(failure=False, duration=10.0)
    assert h.breaker.state is expected


def test_stale_closed_permit_cannot_touch_an_open_breaker() -> None:
    h = Harness(consecutive_failures=1, open_duration=10.0)
    slow_permit = h.breaker.allow()
    assert slow_permit is not None
    h.call(failure=True)
    h.clock.advance(10.0)
    assert h.breaker.state is HALF_OPEN
    h.breaker.record(slow_permit, failure=False, duration=10.0)
    assert h.breaker.state is HALF_OPEN  # did not count as a successful probe
    h.breaker.record(slow_permit, failure=True, duration=10.0)
    assert h.breaker.state is HALF_OPEN  # nor as a failed one


def test_stale_permit_does_not_count_in_a_new_closed_period() -> None:
    h = Harness(consecutive_failures=2)
    stale = h.breaker.allow()
    assert stale is not None
    h.trip()
    h.clock.advance(30.0)
    h.call(failure=False)
    assert h.breaker.state is CLOSED
    h.breaker.record(stale, failure=True, duration=0.01)
    h.call(failure=True)
    assert h.breaker.state is CLOSED  # one counted failure, not two


def test_release_returns_a_probe_slot() -> None:
    h = Harness(consecutive_failures=1, half_open_probes=1)
    h.trip()
    h.clock.advance(30.0)
    probe = h.breaker.allow()
    assert probe is not None
    assert h.breaker.allow() is None
    h.breaker.release(probe)
    again = h.breaker.allow()
    assert again is not None
    h.breaker.record(again, failure=False, duration=0.01)
    assert h.breaker.state is CLOSED


def test_release_of_stale_or_closed_permit_is_harmless() -> None:
    h = Harness(consecutive_failures=1, half_open_probes=1)
    closed_permit = h.breaker.allow()
    assert closed_permit is not None
    h.breaker.release(closed_permit)
    assert h.breaker.state is CLOSED
    h.trip()
    h.clock.advance(30.0)
    probe = h.breaker.allow()
    assert probe is not None
    h.breaker.release(closed_permit)  # stale: must not free the probe's slot
    assert h.breaker.allow() is None


def test_release_after_record_frees_nothing() -> None:
    h = Harness(consecutive_failures=1, half_open_probes=2)
    h.trip()
    h.clock.advance(30.0)
    first = h.breaker.allow()
    assert first is not None
    h.breaker.record(first, failure=False, duration=0.01)
    h.breaker.release(first)  # a misuse: the slot was already settled
    assert h.breaker.snapshot()["half_open"]["probes_in_flight"] == 0
    second = h.breaker.allow()
    assert second is not None
    assert h.breaker.allow() is None


def test_each_transition_reported_once() -> None:
    h = Harness(consecutive_failures=1)
    h.trip()
    for _ in range(5):
        assert h.breaker.allow() is None
        h.breaker.state  # noqa: B018  (reads must not report again)
    h.clock.advance(30.0)
    for _ in range(3):
        h.breaker.state  # noqa: B018
    h.call(failure=False)
    assert h.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_works_without_a_transition_callback() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1), clock)
    permit = breaker.allow()
    assert permit is not None
    breaker.record(permit, failure=True, duration=0.0)
    assert breaker.state is OPEN


def test_snapshot_of_an_open_breaker() -> None:
    h = Harness(consecutive_failures=2, open_duration=30.0)
    h.calls(".FF")
    h.clock.advance(12.0)
    assert h.breaker.snapshot() == {
        "state": "open",
        "generation": 1,
        "consecutive_failures": 2,
        "window": {
            "type": "count",
            "calls": 3,
            "failures": 2,
            "slow_calls": 0,
            "failure_rate": pytest.approx(200 / 3),
            "slow_call_rate": 0.0,
            "minimum_calls": 10,
        },
        "half_open": {"probes_allowed": 1, "probes_in_flight": 0, "probes_succeeded": 0},
        "opened_age": 12.0,
        "retry_after": 18.0,
    }


# --- policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_kind", "flags", "expected"),
    [
        (500, None, {}, True),
        (503, None, {}, True),
        (599, None, {}, True),
        (200, None, {}, False),
        (404, None, {}, False),
        (429, None, {"failure_statuses": frozenset({429, 503})}, True),
        (500, None, {"failure_statuses": frozenset({429, 503})}, False),
        (None, None, {}, False),
        (None, "refused", {}, True),
        (None, "reset", {}, True),
        (None, "malformed", {}, True),
        (None, "timeout", {}, True),
        (None, "refused", {"count_connection_errors": False}, False),
        (None, "malformed", {"count_connection_errors": False}, False),
        (None, "timeout", {"count_connection_errors": False}, True),
        (None, "timeout", {"count_timeouts": False}, False),
        (None, "reset", {"count_timeouts": False}, True),
        (200, "reset", {}, True),
        (500, "timeout", {"count_timeouts": False}, False),
    ],
    ids=[
        "500",
        "503",
        "599",
        "200-ok",
        "404-client-error",
        "custom-status-429",
        "custom-statuses-exclude-500",
        "no-status-no-error",
        "refused",
        "reset",
        "malformed",
        "timeout",
        "refused-not-counted",
        "malformed-not-counted",
        "timeout-independent-of-connection-flag",
        "timeout-not-counted",
        "reset-independent-of-timeout-flag",
        "error-kind-wins-over-ok-status",
        "error-kind-wins-over-failure-status",
    ],
)
def test_is_failure(
    status: int | None, error_kind: str | None, flags: dict[str, Any], expected: bool
) -> None:
    assert BreakerPolicy(**flags).is_failure(status, error_kind) is expected


def test_is_failure_rejects_unknown_error_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown error kind 'refsued' \(known: malformed"):
        BreakerPolicy().is_failure(None, "refsued")


INVALID_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"consecutive_failures": 0}, "consecutive_failures must be an integer >= 1"),
    ({"consecutive_failures": True}, "consecutive_failures must be an integer >= 1"),
    (
        {"failure_rate_threshold": 0},
        r"failure_rate_threshold must be a percentage in \(0, 100\]",
    ),
    ({"failure_rate_threshold": 100.5}, "failure_rate_threshold must be a percentage"),
    ({"slow_call_rate_threshold": -1}, "slow_call_rate_threshold must be a percentage"),
    ({"consecutive_failures": None}, "needs at least one of consecutive_failures"),
    ({"slow_call_duration": 0}, "slow_call_duration must be > 0"),
    ({"window_type": "sliding"}, r"unknown window_type 'sliding' \(known: count, time\)"),
    ({"window_size": 0}, r"window_size must be an integer in \[1, 100000\]"),
    ({"window_size": 100_001}, "window_size must be an integer"),
    ({"window_duration": 0.5}, r"window_duration must be in \[1, 3600\] seconds"),
    ({"window_duration": 7200}, "window_duration must be in"),
    ({"minimum_calls": 0}, "minimum_calls must be an integer >= 1"),
    (
        {"failure_rate_threshold": 50, "window_size": 5, "minimum_calls": 6},
        r"minimum_calls \(6\) exceeds window_size \(5\)",
    ),
    ({"open_duration": 0}, "open_duration must be > 0"),
    ({"open_duration": float("nan")}, "open_duration must be > 0"),
    ({"half_open_probes": 0}, "half_open_probes must be an integer >= 1"),
    ({"failure_statuses": frozenset({700})}, r"HTTP statuses 100-599, got \[700\]"),
]


def _fields_id(fields: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in fields.items())


@pytest.mark.parametrize(
    ("fields", "message"),
    INVALID_POLICIES,
    ids=[_fields_id(fields) for fields, _ in INVALID_POLICIES],
)
def test_policy_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"consecutive_failures": None, "failure_rate_threshold": 100},
        {"consecutive_failures": None, "slow_call_rate_threshold": 0.5},
        # minimum_calls above window_size is harmless when no rate is evaluated ...
        {"window_size": 5, "minimum_calls": 6},
        # ... and a time window has no call count to compare it with.
        {"failure_rate_threshold": 50, "window_type": "time", "window_size": 5},
    ],
    ids=["defaults", "rate-only", "slow-rate-only", "minimum-without-rates", "time-window"],
)
def test_valid_policies(fields: dict[str, Any]) -> None:
    BreakerPolicy(**fields)


def test_policy_equality_keys_breakers_across_reloads() -> None:
    first = BreakerPolicy(failure_statuses={502, 503})  # type: ignore[arg-type]
    second = BreakerPolicy(failure_statuses=frozenset({503, 502}))
    assert first == second
    assert {first: "breaker"}[second] == "breaker"
    assert isinstance(first.failure_statuses, frozenset)
    assert BreakerPolicy(open_duration=10) != BreakerPolicy(open_duration=20)
