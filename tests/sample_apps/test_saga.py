"""The saga engine and the order-state mapping, with fake step callables and no network."""

from __future__ import annotations

import pytest

from extracted_services.orders.placement import failure_status, order_state
from extracted_services.orders.saga import (
    Compensation,
    Saga,
    SagaResult,
    SagaStep,
    StepFailed,
    StepRecord,
    StepRejected,
)


class Ledger:
    """Records every action and compensation the fakes perform, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def step(
        self, name: str, *, error: Exception | None = None, undo_failures: int = 0
    ) -> SagaStep:
        remaining = [undo_failures]

        async def action() -> Compensation:
            self.calls.append(name)
            if error is not None:
                raise error

            async def undo() -> None:
                self.calls.append(f"undo {name}")
                if remaining[0] > 0:
                    remaining[0] -= 1
                    raise StepFailed(f"{name} undo broke")

            return undo

        return SagaStep(name, action, f"undo_{name}", detail=name)


def outcomes(result: SagaResult) -> list[tuple[str, str, str]]:
    return [(r.step, r.phase, r.outcome) for r in result.records]


async def test_all_steps_succeed_and_nothing_is_undone() -> None:
    ledger = Ledger()
    result = await Saga([ledger.step("a"), ledger.step("b"), ledger.step("c")]).run()
    assert result.completed
    assert ledger.calls == ["a", "b", "c"]
    assert outcomes(result) == [("a", "action", "ok"), ("b", "action", "ok"), ("c", "action", "ok")]


async def test_rejection_compensates_done_steps_in_reverse() -> None:
    ledger = Ledger()
    steps = [ledger.step("a"), ledger.step("b"), ledger.step("c", error=StepRejected("no"))]
    result = await Saga(steps).run()
    assert (result.failed_step, result.rejected, result.failure) == ("c", True, "no")
    assert not result.compensation_failed
    assert ledger.calls == ["a", "b", "c", "undo b", "undo a"]
    assert result.records[2:] == (
        StepRecord("c", "action", "rejected", "no"),
        StepRecord("undo_b", "compensation", "ok", "b", compensates="b"),
        StepRecord("undo_a", "compensation", "ok", "a", compensates="a"),
    )


async def test_technical_failure_is_not_a_rejection() -> None:
    ledger = Ledger()
    result = await Saga([ledger.step("a"), ledger.step("b", error=RuntimeError())]).run()
    assert (result.failed_step, result.rejected, result.failure) == ("b", False, "RuntimeError")
    assert ledger.calls == ["a", "b", "undo a"]


async def test_first_step_failing_compensates_nothing() -> None:
    ledger = Ledger()
    result = await Saga([ledger.step("a", error=StepRejected("x")), ledger.step("b")]).run()
    assert ledger.calls == ["a"]
    assert outcomes(result) == [("a", "action", "rejected")]


async def test_step_without_compensation_is_skipped_when_undoing() -> None:
    ledger = Ledger()

    async def read_only() -> None:
        ledger.calls.append("read")

    steps = [ledger.step("a"), SagaStep("read", read_only), ledger.step("b", error=StepFailed())]
    await Saga(steps).run()
    assert ledger.calls == ["a", "read", "b", "undo a"]


async def test_compensation_is_retried() -> None:
    ledger = Ledger()
    steps = [ledger.step("a", undo_failures=2), ledger.step("b", error=StepFailed("down"))]
    result = await Saga(steps, compensation_attempts=3).run()
    assert ledger.calls == ["a", "b", "undo a", "undo a", "undo a"]
    assert not result.compensation_failed
    assert result.records[-1].outcome == "ok"


async def test_failed_compensation_does_not_stop_the_others() -> None:
    ledger = Ledger()
    steps = [
        ledger.step("a"),
        ledger.step("b", undo_failures=99),
        ledger.step("c", error=StepFailed("down")),
    ]
    result = await Saga(steps, compensation_attempts=2).run()
    assert result.compensation_failed
    assert ledger.calls == ["a", "b", "c", "undo b", "undo b", "undo a"]
    assert outcomes(result)[-2:] == [
        ("undo_b", "compensation", "failed"),
        ("undo_a", "compensation", "ok"),
    ]
    assert result.records[-2].detail == "b undo broke (after 2 attempts)"


def test_compensation_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Saga([], compensation_attempts=0)


@pytest.mark.parametrize(
    ("failed_step", "rejected", "broken", "state", "status", "code"),
    [
        (None, False, False, "placed", None, None),
        ("reserve_stock", True, False, "rejected_out_of_stock", 409, "insufficient_stock"),
        ("reserve_stock", False, False, "failed_compensated", 502, "order_failed"),
        ("charge_payment", True, False, "payment_failed_compensated", 402, "payment_declined"),
        ("charge_payment", False, False, "payment_failed_compensated", 502, "order_failed"),
        ("create_shipment", False, False, "failed_compensated", 502, "order_failed"),
        ("confirm_order", False, False, "failed_compensated", 502, "order_failed"),
        ("create_shipment", False, True, "compensation_failed", 500, "compensation_failed"),
    ],
    ids=[
        "completed",
        "out-of-stock",
        "inventory-down",
        "card-declined",
        "payments-down",
        "shipping-down",
        "confirm-failed",
        "undo-failed",
    ],
)
def test_order_state_and_status(
    failed_step: str | None,
    rejected: bool,
    broken: bool,
    state: str,
    status: int | None,
    code: str | None,
) -> None:
    result = SagaResult((), failed_step=failed_step, rejected=rejected, compensation_failed=broken)
    assert order_state(result) == state
    if status is not None:
        failure = failure_status(state, result)
        assert (failure.status, failure.code) == (status, code)
