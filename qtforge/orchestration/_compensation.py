"""Compensation: running the rollback steps of completed steps after a failure.

When an execution fails (a critical step failed, or the workflow timed out) or is
cancelled, every step that completed and has a rollback step
(`Workflow.add_rollback_step`) is compensated, the latest completion first. Each
rollback runs with its own timeout (a cancel scope per attempt) and retry policy,
shielded from the cancellation that ended the execution; a rollback that fails is
recorded and the next one still runs. The order is sans-I/O (`compensation_order`);
`Compensator` wires it to the plugin calls.

A rollback step's input mapping is the compensated step's own input mapping, plus what
its result passed on to its dependents (a mapping result's keys, else
``{step_id: result}``), plus ``"result"``: the result itself; the rollback step's
``parameters`` win over all of these.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio

from .._errors import PluginError, PluginErrorCode
from . import _events as ev
from ._calls import StepCalls
from ._dataflow import DataFlow, contribution
from ._model import StepStatus
from ._records import StepRecord, error_fields
from ._spec import StepSpec, WorkflowSpec
from ._workflow import RetryPredicate

__all__ = ["CompensationRecord", "Compensator", "compensation_order"]

Emit = Callable[..., None]  # (event kind, step index, loop time, **details)


def compensation_order(spec: WorkflowSpec, records: Sequence[StepRecord]) -> list[int]:
    """The indices of the completed steps that have a rollback step, latest completion
    first. Steps completed at the same instant go in reverse topological order, and
    steps without a completion time last."""
    done = [index for index in spec.rollbacks if records[index].status is StepStatus.Completed]

    def completion(index: int) -> tuple[float, int]:
        finished = records[index].finished_at
        return (-math.inf if finished is None else finished, spec.position[index])

    return sorted(done, key=completion, reverse=True)


class CompensationRecord:
    """The outcome of one rollback step, for status and results."""

    __slots__ = ("attempts", "error", "finished_at", "started_at", "status")

    def __init__(
        self, status: str = "pending", attempts: int = 0, error: PluginError | None = None
    ) -> None:
        self.status = status
        self.attempts = attempts
        self.error = error
        self.started_at: float | None = None  # loop time
        self.finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "attempts": self.attempts, **error_fields(self.error)}


class Compensator:
    """Runs the rollback steps of one execution (see the module docstring)."""

    def __init__(
        self,
        calls: StepCalls,
        spec: WorkflowSpec,
        flow: DataFlow,
        records: Sequence[StepRecord],
        retry_on: RetryPredicate | None,
        rng: random.Random,
        now: Callable[[], float],
        emit: Emit,
        ended: Callable[[int, CompensationRecord], Awaitable[None]],
    ) -> None:
        self._calls = calls
        self._spec = spec
        self._flow = flow
        self._records = records
        self._retry_on = retry_on
        self._rng = rng
        self._now = now
        self._emit = emit
        self._ended = ended
        self.outcomes: dict[str, CompensationRecord] = {}

    async def run(self, done: Mapping[str, CompensationRecord]) -> None:
        """Compensate every completed step that has a rollback, latest first, but those
        in `done` (their rollbacks ended before a resume); shielded. `ended` is awaited
        after each rollback step ends."""
        self.outcomes = dict(done)
        steps = self._spec.steps
        order = [
            index
            for index in compensation_order(self._spec, self._records)
            if steps[index].step_id not in done
        ]
        for index in order:
            self.outcomes[steps[index].step_id] = CompensationRecord()
        with anyio.CancelScope(shield=True):
            for index in order:
                await self._compensate(index)
                await self._ended(index, self.outcomes[steps[index].step_id])

    def statuses(self) -> dict[str, str]:
        return {step_id: record.status for step_id, record in self.outcomes.items()}

    def results(self) -> dict[str, dict[str, Any]]:
        return {step_id: record.as_dict() for step_id, record in self.outcomes.items()}

    def _inputs(self, index: int) -> Mapping[str, Any]:
        step = self._spec.steps[index]
        rollback = self._spec.rollbacks[index]
        result = self._records[index].result
        return {
            **self._flow.replay_inputs(index),
            **contribution(step.step_id, result),
            "result": result,
            **rollback.parameters,
        }

    async def _compensate(self, index: int) -> None:
        step_id = self._spec.steps[index].step_id
        rollback = self._spec.rollbacks[index]
        record = self.outcomes[step_id]
        inputs = self._inputs(index)
        attempt = 1
        while True:
            record.status = "running"
            record.attempts = attempt
            started = self._now()
            if record.started_at is None:
                record.started_at = started
            self._emit(ev.CompensationStarted, index, started, attempt=attempt)
            raised = await self._attempt(index, rollback, inputs, attempt)
            record.finished_at = self._now()
            if raised is None:
                record.status = "completed"
                duration = round((self._now() - started) * 1000, 3)
                self._emit(
                    ev.CompensationCompleted,
                    index,
                    self._now(),
                    attempt=attempt,
                    duration_ms=duration,
                )
                return
            delay = self._retry_delay(rollback, raised, attempt)
            if delay is None:
                error = _as_plugin_error(raised, self._where(index), rollback)
                record.status = "failed"
                record.error = error
                self._emit(
                    ev.CompensationFailed,
                    index,
                    self._now(),
                    attempt=attempt,
                    **error_fields(error),
                )
                return
            await anyio.sleep(delay)
            attempt += 1

    async def _attempt(
        self, index: int, rollback: StepSpec, inputs: Mapping[str, Any], attempt: int
    ) -> Exception | None:
        """One attempt, bounded by the rollback step's timeout; its error, or None."""
        timeout = rollback.timeout_seconds
        with anyio.CancelScope(deadline=self._now() + timeout if timeout else math.inf) as scope:
            try:
                call = self._calls.start(index, rollback, inputs, attempt)
                if isinstance(call, tuple):  # its plugin is not initialized yet
                    call = self._calls.initialize_then_call(call, index, rollback, inputs, attempt)
                await call
            except Exception as exc:
                return exc
        if scope.cancelled_caught:
            return PluginError(
                PluginErrorCode.Timeout,
                f"{self._where(index)} timed out after {rollback.timeout:g} ms (attempt {attempt})",
            )
        return None

    def _where(self, index: int) -> str:
        return f"rollback of step {self._spec.steps[index].step_id!r}"

    def _retry_delay(self, rollback: StepSpec, error: Exception, attempt: int) -> float | None:
        try:
            allowed = rollback.retry.allows(error, attempt, self._retry_on)
        except Exception:  # a broken predicate does not stop the other compensations
            allowed = False
        return rollback.retry.wait_before(attempt, self._rng) if allowed else None


def _as_plugin_error(exc: Exception, where: str, rollback: StepSpec) -> PluginError:
    if isinstance(exc, PluginError):
        return exc
    return PluginError(
        PluginErrorCode.ExecutionFailed,
        f"{where}: {rollback.plugin_id}.{rollback.method_name}() raised "
        f"{type(exc).__name__}: {exc}",
        repr(exc),
    )
