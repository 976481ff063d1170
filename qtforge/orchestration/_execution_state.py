"""What one execution knows: its steps' records and counts, the status and results
dictionaries built from them (SPEC 4 and 5), restoring a stored execution, and
publishing its events. The scheduler (``_execution.py``) drives it; everything here
runs on the engine's event loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from .._errors import PluginError
from . import _events as ev
from ._compensation import CompensationRecord, Compensator
from ._dataflow import DataFlow, contribution
from ._model import StepStatus
from ._records import (
    ExecutionStatus,
    StepRecord,
    StoredStep,
    Timeline,
    duration_ms,
    error_fields,
    step_result,
)
from ._spec import WorkflowSpec
from ._store import Journal

if TYPE_CHECKING:
    from ._engine import AsyncPluginOrchestrator

__all__ = ["ExecutionState"]


def _loop_clock() -> Callable[[], float]:
    """The running event loop's clock: what `anyio.current_time` reads, minus the
    per-call backend lookup that would otherwise cost the scheduler µs per step."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop().time
    return anyio.current_time


class ExecutionState:
    """What one execution knows, and how it reads: its steps' records and counts, the
    status and results dictionaries, restoring from a store, and its events. The
    scheduler (`_execution.Execution`) changes it."""

    def __init__(
        self,
        engine: AsyncPluginOrchestrator,
        spec: WorkflowSpec,
        initial_data: Mapping[str, Any],
        wall_now: float,
        execution_id: str | None = None,
    ) -> None:
        self.id = execution_id or uuid.uuid4().hex
        self.spec = spec
        self.initial_data = initial_data
        self.status = ExecutionStatus.Pending
        self.error: PluginError | None = None
        self.records = [StepRecord() for _ in spec.steps]
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.done = anyio.Event()
        self._now = _loop_clock()
        self.timeline = Timeline(self._now(), wall_now)
        self.created_at = wall_now  # seconds since the epoch
        self.data: dict[str, Any] | None = None

        self._engine = engine
        self._hub = engine._hub
        self._flow = DataFlow(spec, initial_data)
        self._waiting = [len(deps) for deps in spec.deps]
        self._completed_deps = [0] * len(spec.steps)
        self._running: dict[int, None] = {}
        self._counts = dict.fromkeys(StepStatus, 0)
        # Step id -> status string, kept current so that status queries copy, not build.
        self._step_statuses = dict.fromkeys(spec.index, StepStatus.Pending.value)
        self._finished = 0  # steps in a final status
        self._partial = 0.0  # summed progress (0..1) of running steps
        self._cancel_requested: str | None = None
        self._log = engine._log.bind(workflow_id=spec.workflow_id, execution_id=self.id)
        self._debug = engine._debug_logging()
        self.journal: Journal | None = None  # set by the engine when it has a store
        self._compensator: Compensator | None = None
        self._compensated: Mapping[str, CompensationRecord] | None = None  # restore_ending

    def restore(self, stored: Mapping[str, StoredStep]) -> None:
        """Resuming, before `run`: take the steps in `stored` as they ended. Completed
        ones feed their results to their dependents; the others (an execution cut short
        while compensating) keep their final status."""
        spec = self.spec
        loop = self.timeline.loop
        for index in spec.order:
            step = spec.steps[index]
            found = stored.get(step.step_id)
            if found is None:
                continue
            record = self.records[index]
            record.status = found.status
            record.attempts = found.attempts
            record.error = found.error
            record.reason = found.reason
            record.started_at = loop(found.started_at)
            record.finished_at = loop(found.finished_at)
            if found.status is StepStatus.Completed:
                self._flow.inputs(index)  # what it passes on to its dependents
                record.result = found.result
                self._flow.record(index, contribution(step.step_id, found.result))
                for dependent in spec.dependents[index]:
                    self._waiting[dependent] -= 1
                    self._completed_deps[dependent] += 1
            self._counts[found.status] += 1
            self._finished += 1
            self._step_statuses[step.step_id] = found.status.value
            self._waiting[index] = -1  # never reaches 0 again: never made ready again

    def restore_ending(
        self,
        status: ExecutionStatus,
        error: PluginError | None,
        compensated: Mapping[str, CompensationRecord],
    ) -> None:
        """Resuming an execution cut short while compensating: `run` will only run the
        rollback steps not in `compensated` (those that ended), then finish `status`."""
        self.status = status
        self.error = error
        self._compensated = compensated

    # -- reading ---------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested is not None

    def progress(self) -> float:
        """Percent of steps finished, counting running steps' reported progress."""
        return round(100.0 * (self._finished + self._partial) / len(self.records), 2)

    def status_dict(self) -> dict[str, Any]:
        """`get_workflow_status`'s dictionary (SPEC 5)."""
        steps = self.spec.steps
        running = [steps[i].step_id for i in self._running]
        counts = self._counts
        return {
            "execution_id": self.id,
            "workflow_id": self.spec.workflow_id,
            "status": self.status.value,
            "progress": self.progress(),
            "current_step": running[0] if running else None,
            "running_steps": running,
            "completed_steps": counts[StepStatus.Completed],
            "failed_steps": counts[StepStatus.Failed],
            "skipped_steps": counts[StepStatus.Skipped],
            "cancelled_steps": counts[StepStatus.Cancelled],
            "total_steps": len(steps),
            "steps": dict(self._step_statuses),
            "started_at": self.timeline.iso(self.started_at),
            "finished_at": self.timeline.iso(self.finished_at),
            **error_fields(self.error),
            **self._compensations(lambda compensator: compensator.statuses()),
        }

    def _compensations(self, view: Callable[[Compensator], Any]) -> dict[str, Any]:
        """``{"compensations": ...}`` for a workflow with rollback steps, else nothing."""
        if not self.spec.rollbacks:
            return {}
        compensator = self._compensator
        return {"compensations": {} if compensator is None else view(compensator)}

    def results_dict(self) -> dict[str, Any]:
        """`get_workflow_results`'s dictionary (SPEC 4); only once finished."""
        timeline = self.timeline
        return {
            "execution_id": self.id,
            "workflow_id": self.spec.workflow_id,
            "status": self.status.value,
            "data": None if self.data is None else dict(self.data),
            **error_fields(self.error),
            "started_at": timeline.iso(self.started_at),
            "finished_at": timeline.iso(self.finished_at),
            "duration_ms": duration_ms(self.started_at, self.finished_at),
            "steps": {
                step.step_id: step_result(record, timeline)
                for step, record in zip(self.spec.steps, self.records, strict=True)
            },
            **self._compensations(lambda compensator: compensator.results()),
        }

    # -- step outcomes ---------------------------------------------------------------

    def _end_step(self, index: int, status: StepStatus, now: float) -> None:
        record = self.records[index]
        self._counts[status] += 1
        self._finished += 1
        record.status = status
        self._step_statuses[self.spec.steps[index].step_id] = status.value
        record.finished_at = now
        if index in self._running:
            del self._running[index]
            self._partial -= record.progress
        if status is StepStatus.Cancelled:
            self._emit(ev.StepCancelled, index, now, progress=self.progress())
        if self.journal is not None and status is not StepStatus.Completed:
            self.journal.step_ended(
                index, status.value, record.attempts, record.error, record.reason
            )

    def _report(self, index: int, fraction: float, message: str | None) -> None:
        record = self.records[index]
        if index in self._running:
            self._partial += fraction - record.progress
            record.progress = fraction
            self._emit(
                ev.Progress,
                index,
                self._now(),
                progress=self.progress(),
                step_progress=fraction,
                message=message,
            )

    # -- events ----------------------------------------------------------------------

    def _emit(
        self, kind: Callable[..., ev.Event], index: int | None, now: float, **details: Any
    ) -> None:
        """Publish an event of `kind` about step `index` (None: the workflow) at loop
        time `now`, if anyone listens."""
        hub = self._hub
        if hub.listening:
            hub.publish(
                kind(
                    execution_id=self.id,
                    workflow_id=self.spec.workflow_id,
                    step_id=None if index is None else self.spec.steps[index].step_id,
                    timestamp=self.timeline.wall(now),
                    **details,
                )
            )
