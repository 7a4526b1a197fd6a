from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strangler.bulkhead import Bulkhead, BulkheadPolicy


class Waiters:
    """Named waiters that record the order in which they were granted a slot."""

    def __init__(self) -> None:
        self.granted: list[str] = []

    def make(self, name: str) -> Callable[[], None]:
        def waiter() -> None:
            self.granted.append(name)

        waiter.__name__ = f"waiter_{name}"
        return waiter


def full(max_concurrent: int = 2, max_waiting: int = 2) -> Bulkhead:
    bulkhead = Bulkhead(max_concurrent, max_waiting)
    for _ in range(max_concurrent):
        assert bulkhead.try_enter()
    return bulkhead


def test_enter_until_full_then_release() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_enter()
    assert bulkhead.try_enter()
    assert not bulkhead.try_enter()
    assert bulkhead.active == 2
    bulkhead.release()
    assert bulkhead.active == 1
    assert bulkhead.try_enter()
    assert not bulkhead.try_enter()


def test_queue_is_served_in_order_and_keeps_the_slot() -> None:
    bulkhead, waiters = full(max_concurrent=2, max_waiting=3), Waiters()
    for name in "abc":
        assert bulkhead.enqueue(waiters.make(name))
    assert bulkhead.waiting == 3
    bulkhead.release()
    assert waiters.granted == ["a"]
    assert (bulkhead.active, bulkhead.waiting) == (2, 2)
    assert not bulkhead.try_enter()  # the freed slot went to the waiter, not to a newcomer
    bulkhead.release()
    bulkhead.release()
    assert waiters.granted == ["a", "b", "c"]
    assert (bulkhead.active, bulkhead.waiting) == (2, 0)
    bulkhead.release()
    assert bulkhead.active == 1


@pytest.mark.parametrize(
    ("max_waiting", "queued"),
    [(0, 0), (1, 1), (3, 3)],
    ids=["no-queue", "queue-of-one", "queue-of-three"],
)
def test_queue_overflow_is_refused(max_waiting: int, queued: int) -> None:
    bulkhead, waiters = full(max_concurrent=1, max_waiting=max_waiting), Waiters()
    accepted = [bulkhead.enqueue(waiters.make(str(i))) for i in range(max_waiting + 2)]
    assert accepted == [True] * queued + [False] * (max_waiting + 2 - queued)
    assert bulkhead.waiting == queued


def test_cancel_removes_a_queued_waiter() -> None:
    bulkhead, waiters = full(max_concurrent=1, max_waiting=3), Waiters()
    a, b, c = (waiters.make(name) for name in "abc")
    for waiter in (a, b, c):
        bulkhead.enqueue(waiter)
    assert bulkhead.cancel(b)
    assert not bulkhead.cancel(b)  # already gone
    assert bulkhead.waiting == 2
    bulkhead.release()
    bulkhead.release()
    assert waiters.granted == ["a", "c"]


def test_cancel_of_a_granted_or_unknown_waiter() -> None:
    bulkhead, waiters = full(max_concurrent=1, max_waiting=1), Waiters()
    granted = waiters.make("a")
    bulkhead.enqueue(granted)
    bulkhead.release()
    assert not bulkhead.cancel(granted)  # its timer fired too late: it holds a slot already
    assert not bulkhead.cancel(waiters.make("stranger"))
    assert bulkhead.active == 1


def test_cancel_frees_room_in_the_queue() -> None:
    bulkhead, waiters = full(max_concurrent=1, max_waiting=1), Waiters()
    first = waiters.make("a")
    assert bulkhead.enqueue(first)
    assert not bulkhead.enqueue(waiters.make("b"))
    bulkhead.cancel(first)
    assert bulkhead.enqueue(waiters.make("c"))


def test_release_with_an_empty_queue_frees_the_slot() -> None:
    bulkhead, waiters = full(max_concurrent=1, max_waiting=1), Waiters()
    waiter = waiters.make("a")
    bulkhead.enqueue(waiter)
    bulkhead.cancel(waiter)
    bulkhead.release()
    assert waiters.granted == []
    assert bulkhead.active == 0


def test_bound_methods_cancel_by_equality() -> None:
    class Request:
        def __init__(self) -> None:
            self.started = False

        def start(self) -> None:
            self.started = True

    bulkhead = full(max_concurrent=1, max_waiting=2)
    request = Request()
    bulkhead.enqueue(request.start)
    assert bulkhead.cancel(request.start)  # a fresh bound method, equal to the queued one


def test_misuse_raises() -> None:
    bulkhead = Bulkhead(1, 2)
    with pytest.raises(RuntimeError, match="release"):
        bulkhead.release()
    with pytest.raises(RuntimeError, match="call try_enter"):
        bulkhead.enqueue(lambda: None)
    bulkhead.try_enter()
    waiter = Waiters().make("a")
    bulkhead.enqueue(waiter)
    with pytest.raises(ValueError, match="already queued"):
        bulkhead.enqueue(waiter)


def test_snapshot() -> None:
    bulkhead = full(max_concurrent=2, max_waiting=5)
    bulkhead.enqueue(Waiters().make("a"))
    assert bulkhead.snapshot() == {
        "active": 2,
        "max_concurrent": 2,
        "waiting": 1,
        "max_waiting": 5,
    }


def test_from_policy() -> None:
    bulkhead = Bulkhead.from_policy(BulkheadPolicy(max_concurrent=3, max_wait=0.5, max_waiting=7))
    assert (bulkhead.max_concurrent, bulkhead.max_waiting) == (3, 7)


@pytest.mark.parametrize(
    ("max_concurrent", "max_waiting", "message"),
    [
        (0, 0, "max_concurrent must be an integer >= 1"),
        (1, -1, "max_waiting must be an integer >= 0"),
    ],
    ids=["no-slots", "negative-queue"],
)
def test_bulkhead_validation(max_concurrent: Any, max_waiting: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bulkhead(max_concurrent, max_waiting)


def test_bulkhead_refuses_fractional_slots() -> None:
    # Interpreted, the constructor's own check says so; compiled (mypyc), the typed parameter
    # refuses a float before it runs. Operators never reach this: BulkheadPolicy validates first.
    with pytest.raises((TypeError, ValueError), match=r"max_concurrent must be an integer|float"):
        Bulkhead(1.5, 0)


# --- policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [{}, {"max_concurrent": 1}, {"max_wait": 0.25, "max_waiting": 100}],
    ids=["defaults", "single-slot", "queue-with-wait"],
)
def test_valid_policies(fields: dict[str, Any]) -> None:
    BulkheadPolicy(**fields)


INVALID_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"max_concurrent": 0}, "max_concurrent must be an integer >= 1"),
    ({"max_concurrent": True}, "max_concurrent must be an integer >= 1"),
    ({"max_wait": -0.1}, "max_wait must be >= 0 seconds"),
    ({"max_wait": float("nan")}, "max_wait must be >= 0 seconds"),
    ({"max_waiting": -1}, "max_waiting must be an integer >= 0"),
    ({"max_wait": 0.5}, r"max_wait \(0.5\) and max_waiting \(0\) must both be zero"),
    ({"max_waiting": 10}, r"max_wait \(0.0\) and max_waiting \(10\) must both be zero"),
]


@pytest.mark.parametrize(
    ("fields", "message"),
    INVALID_POLICIES,
    ids=[",".join(f"{k}={v}" for k, v in fields.items()) for fields, _ in INVALID_POLICIES],
)
def test_policy_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BulkheadPolicy(**fields)
