"""A saga: run steps in order; when one fails, run the done steps' compensations in reverse.

Theory of operation. A ``SagaStep`` is a name and an ``action`` coroutine
function. The action either raises, or returns the compensation that undoes
exactly what it did (a closure over the ids it created), or ``None`` when there
is nothing to undo. ``Saga.run`` calls the actions one by one and records each
outcome. On the first raise it stops, then awaits the collected compensations
newest first; a compensation that raises is retried up to
``compensation_attempts`` times and, if it still fails, is recorded as failed
while the remaining compensations still run (one stuck refund must not keep a
reservation held).

Two kinds of failure: ``StepRejected`` is a business refusal (out of stock,
card declined) where the step changed nothing; ``StepFailed`` (and any other
exception) is a technical failure. Neither is compensated for the failing step
itself: it returned no compensation. The class does no I/O of its own, holds no
clock and never sleeps, so it is tested with plain async callables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Compensation",
    "Saga",
    "SagaResult",
    "SagaStep",
    "StepAction",
    "StepFailed",
    "StepRecord",
    "StepRejected",
]

Compensation = Callable[[], Awaitable[None]]
StepAction = Callable[[], Awaitable[Compensation | None]]
Outcome = Literal["ok", "rejected", "failed"]


class StepRejected(Exception):
    """The other side said no for a business reason; nothing was changed."""


class StepFailed(Exception):
    """The step could not be carried out (upstream error, timeout, refused connection)."""


@dataclass(frozen=True, slots=True)
class SagaStep:
    name: str
    action: StepAction
    compensation_name: str = "compensate"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    phase: Literal["action", "compensation"]
    outcome: Outcome
    detail: str = ""
    compensates: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "step": self.step,
            "phase": self.phase,
            "outcome": self.outcome,
            "detail": self.detail,
            "compensates": self.compensates,
        }


@dataclass(frozen=True, slots=True)
class SagaResult:
    records: tuple[StepRecord, ...]
    failed_step: str | None = None
    rejected: bool = False
    failure: str = ""
    compensation_failed: bool = False

    @property
    def completed(self) -> bool:
        return self.failed_step is None


class Saga:
    def __init__(self, steps: Sequence[SagaStep], *, compensation_attempts: int = 3) -> None:
        if compensation_attempts < 1:
            raise ValueError("compensation_attempts must be at least 1")
        self._steps = tuple(steps)
        self._attempts = compensation_attempts

    async def run(self) -> SagaResult:
        records: list[StepRecord] = []
        done: list[tuple[SagaStep, Compensation]] = []
        for step in self._steps:
            try:
                compensation = await step.action()
            except Exception as exc:
                rejected = isinstance(exc, StepRejected)
                outcome: Outcome = "rejected" if rejected else "failed"
                records.append(StepRecord(step.name, "action", outcome, _describe(exc)))
                compensation_failed = await self._compensate(done, records)
                return SagaResult(
                    tuple(records),
                    failed_step=step.name,
                    rejected=rejected,
                    failure=_describe(exc),
                    compensation_failed=compensation_failed,
                )
            records.append(StepRecord(step.name, "action", "ok", step.detail))
            if compensation is not None:
                done.append((step, compensation))
        return SagaResult(tuple(records))

    async def _compensate(
        self, done: list[tuple[SagaStep, Compensation]], records: list[StepRecord]
    ) -> bool:
        """Undo ``done`` newest first; True when any compensation finally failed."""
        any_failed = False
        for step, compensation in reversed(done):
            error = ""
            for _attempt in range(self._attempts):
                try:
                    await compensation()
                except Exception as exc:
                    error = _describe(exc)
                else:
                    error = ""
                    break
            outcome: Outcome = "failed" if error else "ok"
            detail = f"{error} (after {self._attempts} attempts)" if error else step.detail
            records.append(
                StepRecord(step.compensation_name, "compensation", outcome, detail, step.name)
            )
            any_failed = any_failed or bool(error)
        return any_failed


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
