"""One execution of a workflow: the scheduler.

Ready steps wait in a heap keyed by their topological position. Worker tasks take
them one at a time; a worker is spawned only when a step is taken while others are
still ready and no spawned worker is idle, so no-op steps run back to back in one task
(a checkpoint every few steps keeps the loop fair) while steps that wait overlap as
much as the mode allows. A worker runs its steps inside one cancel scope, its lane,
that the execution's watchdog cancels when an attempt outlives its timeout (see
``_deadlines.py``); the worker then settles that attempt and opens a fresh lane, and
retries wait outside it. Step failures are recorded as outcomes, so the execution's
task group only ever sees cancellation and bugs.

A paused execution's workers take no more steps and leave once their steps end; the
execution then waits, ``paused``, with the ready steps still in the heap, and resuming
spawns a worker again. A failed or cancelled execution runs its compensations (see
``_compensation.py``) before its final event.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._errors import PluginError, PluginErrorCode
from . import _events as ev
from ._calls import StepCalls
from ._compensation import CompensationRecord, Compensator
from ._dataflow import contribution
from ._deadlines import Deadlines, Lane
from ._execution_state import ExecutionState
from ._model import ExecutionMode, StepStatus
from ._records import ExecutionStatus, duration_ms, error_fields
from ._spec import StepSpec, WorkflowSpec

if TYPE_CHECKING:
    from ._engine import AsyncPluginOrchestrator

__all__ = ["Execution"]

_CHECKPOINT_EVERY = 16


def _as_plugin_error(exc: Exception, where: str) -> PluginError:
    if isinstance(exc, PluginError):
        return exc
    return PluginError(
        PluginErrorCode.ExecutionFailed, f"{where} raised {type(exc).__name__}: {exc}", repr(exc)
    )


def _no_progress(_index: int, _fraction: float, _message: str | None) -> None:
    """Progress reported by a rollback step is not counted."""


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, anyio.get_cancelled_exc_class())


class Execution(ExecutionState):
    """The scheduler of one execution; lives on the engine's event loop."""

    def __init__(
        self,
        engine: AsyncPluginOrchestrator,
        spec: WorkflowSpec,
        initial_data: Mapping[str, Any],
        wall_now: float,
        execution_id: str | None = None,
    ) -> None:
        super().__init__(engine, spec, initial_data, wall_now, execution_id)
        self._ready: list[int] = []
        self._max_workers = 1 if spec.mode is ExecutionMode.Sequential else engine.max_concurrency
        self._workers = 0
        self._idle = 0
        self._stopping = False
        self._pausing = False  # no new step starts; see `pause`
        self._halted = False  # stopping or pausing: what the workers' loop reads
        self._unpaused: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._calls = StepCalls(engine, spec, self.id, self._report)
        self._deadlines = Deadlines(self._now)
        self._store_lost = False  # see `_store_failed`

    @property
    def pause_requested(self) -> bool:
        return self._pausing

    # -- control ---------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        """Ask the execution to stop; it ends ``cancelled`` as soon as its tasks unwind,
        and no step starts meanwhile."""
        if self._cancel_requested is None:
            self._cancel_requested = reason
        self._stopping = self._halted = True
        if self._scope is not None:
            self._scope.cancel()

    def pause(self) -> None:
        """Start no new step; running steps (and their retries) go on to their outcome,
        and the execution is ``paused`` once none runs."""
        self._pausing = self._halted = True
        if self._unpaused is None:
            self._unpaused = anyio.Event()

    def resume(self) -> None:
        """Undo `pause`: the ready steps start again."""
        self._pausing = False
        self._halted = self._stopping
        if self._unpaused is not None:
            self._unpaused.set()
            self._unpaused = None

    async def run(self) -> None:
        """Run to the end. Checkpoint; records every outcome, raises only cancellation
        coming from outside (which also ends the execution ``cancelled``)."""
        now = self._now()
        self.started_at = now
        if self._compensated is not None:  # resumed while it was compensating
            self.data = self._flow.final_data()
            await self._conclude()
            return
        self.status = ExecutionStatus.Running
        self._emit(ev.WorkflowStarted, None, now, total_steps=len(self.records))
        self._log.info("workflow.started", total_steps=len(self.records))
        timeout = self.spec.timeout_seconds
        self._scope = anyio.CancelScope(deadline=now + timeout if timeout else math.inf)
        if self._cancel_requested is not None:
            self._scope.cancel()
        try:
            with self._scope:
                async with anyio.create_task_group() as watching:
                    if any(step.timeout_seconds for step in self.spec.steps):
                        watching.start_soon(self._deadlines.watch)
                    for index, waiting in enumerate(self._waiting):
                        if not waiting:  # restored steps have -1
                            self._ready.append(self.spec.position[index])
                    heapq.heapify(self._ready)
                    while True:
                        async with anyio.create_task_group() as workers:
                            self._task_group = workers
                            self._spawn_worker()
                        if self._stopping or not self._ready:
                            break
                        await self._paused()  # the workers left ready steps: paused
                    watching.cancel_scope.cancel()  # every step is settled
        except BaseException as exc:
            self._finish(interrupted=exc)
            await self._conclude()
            raise
        self._finish()
        await self._conclude()

    async def _conclude(self) -> None:
        """The status is settled: compensate if need be, then announce and record it."""
        try:
            await self._compensate()
        finally:
            self._announce()
            await self._settled()

    async def _compensate(self) -> None:
        """A failed or cancelled execution runs its rollback steps (``_compensation.py``),
        unless the store failed under it: resuming it will carry on instead."""
        if not self.spec.rollbacks or self.status is ExecutionStatus.Completed or self._store_lost:
            return
        calls = StepCalls(self._engine, self.spec, self.id, _no_progress)
        engine = self._engine
        self._compensator = Compensator(
            calls,
            self.spec,
            self._flow,
            self.records,
            engine.retry_on,
            engine._rng,
            self._now,
            self._emit,
            self._compensation_ended,
        )
        if self.journal is not None:  # a resume after a crash compensates, not re-runs
            await self._record(self.journal.ending(self.status.value, self.error))
        await self._compensator.run(self._compensated or {})

    async def _compensation_ended(self, index: int, record: CompensationRecord) -> None:
        if self.journal is not None:
            wall = self.timeline.wall
            assert record.started_at is not None
            assert record.finished_at is not None
            change = self.journal.compensation_ended(
                index,
                record.status,
                record.attempts,
                record.error,
                wall(record.started_at),
                wall(record.finished_at),
            )
            await self._record(change)

    async def _paused(self) -> None:
        """Nothing runs and no step may start: wait (as ``paused``) for `resume`."""
        unpaused = self._unpaused
        if unpaused is None:  # resumed as the last step was ending
            return
        self.status = ExecutionStatus.Paused
        self._emit(ev.WorkflowPaused, None, self._now())
        self._log.info("workflow.paused")
        await self._record_state()
        try:
            await unpaused.wait()
        finally:
            self.status = ExecutionStatus.Running
        self._emit(ev.WorkflowResumed, None, self._now())
        self._log.info("workflow.resumed")
        await self._record_state()

    async def _record_state(self) -> None:
        """Write the status (paused, or running again) to the store, if there is one."""
        if self.journal is not None:
            await self._record(self.journal.state_changed(self.status.value))

    async def _record(self, write: Awaitable[None]) -> None:
        """Await a store write, shielded; a failure is logged: the store lags behind."""
        with anyio.CancelScope(shield=True):
            try:
                await write
            except PluginError as unrecorded:
                self._log.error("store.write_failed", error=str(unrecorded))

    async def _settled(self) -> None:
        """The final status is known: write it to the store, then tell the waiters."""
        try:
            if self.journal is not None:
                await self._record(self.journal.finished(self.status.value, self.error, self.data))
        finally:
            self.done.set()
            self._engine._execution_finished(self)

    def _finish(self, interrupted: BaseException | None = None) -> None:
        """Settle the final status; `interrupted` is what tore the execution down from
        outside (its task was cancelled) or from a bug."""
        now = self._now()
        assert self._scope is not None
        if interrupted is not None and not _is_cancellation(interrupted):
            self.error = PluginError(
                PluginErrorCode.SystemError,
                f"execution {self.id!r} of workflow {self.spec.workflow_id!r} was interrupted "
                f"by {type(interrupted).__name__}: {interrupted}",
            )
        elif self._cancel_requested is not None or interrupted is not None:
            reason = self._cancel_requested or "the task running it was cancelled"
            self.error = PluginError(
                PluginErrorCode.OperationCancelled,
                f"execution {self.id!r} of workflow {self.spec.workflow_id!r} was cancelled: "
                f"{reason}",
            )
            self.status = ExecutionStatus.Cancelled
        elif self.error is None and self._scope.cancelled_caught:
            self.error = PluginError(
                PluginErrorCode.Timeout,
                f"workflow {self.spec.workflow_id!r} did not finish within its timeout of "
                f"{self.spec.timeout:g} ms",
            )
        if self.status is not ExecutionStatus.Cancelled:
            self.status = ExecutionStatus.Failed if self.error else ExecutionStatus.Completed
        for index, record in enumerate(self.records):
            if not record.status.is_finished:
                self._end_step(index, StepStatus.Cancelled, now)
        self.data = self._flow.final_data()

    def _announce(self) -> None:
        """The execution is over (compensations too): publish its final event."""
        now = self._now()
        self.finished_at = now
        duration = duration_ms(self.started_at, now) or 0.0
        if self.status is ExecutionStatus.Completed:
            self._emit(ev.WorkflowCompleted, None, now, duration_ms=duration)
            self._log.info("workflow.completed", duration_ms=duration)
        elif self.status is ExecutionStatus.Cancelled:
            self._emit(ev.WorkflowCancelled, None, now, duration_ms=duration)
            self._log.info("workflow.cancelled", duration_ms=duration)
        else:
            assert self.error is not None
            fields = error_fields(self.error)
            self._emit(ev.WorkflowFailed, None, now, duration_ms=duration, **fields)
            self._log.warning("workflow.failed", duration_ms=duration, **fields)

    # -- scheduling ------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        assert self._task_group is not None
        self._idle += 1
        self._workers += 1
        self._task_group.start_soon(self._worker)

    async def _worker(self) -> None:
        self._idle -= 1
        lane = Lane()
        try:
            while True:
                lane.scope = anyio.CancelScope()
                with lane.scope:
                    await self._serve(lane)
                if not lane.timed_out:
                    return
                await self._settle_timeout(lane)
        except anyio.get_cancelled_exc_class():
            if lane.index is not None and not self.records[lane.index].status.is_finished:
                self._end_step(lane.index, StepStatus.Cancelled, self._now())
            raise
        finally:
            self._workers -= 1

    async def _serve(self, lane: Lane) -> None:
        """Run ready steps back to back in `lane` until none is left, or an attempt
        times out (the lane's scope is then spent, and the worker settles it)."""
        if lane.index is not None:  # the step whose attempt timed out gets its retry
            await self._attempts(lane, lane.attempt + 1)
            if lane.timed_out:
                return
        order = self.spec.order
        ready = self._ready
        ran = 0
        while ready and not self._halted:
            index = order[heapq.heappop(ready)]
            if ready and not self._idle and self._workers < self._max_workers:
                self._spawn_worker()
            await self._run_step(lane, index)
            if lane.timed_out:
                return
            ran += 1
            if ran % _CHECKPOINT_EVERY == 0:  # let other tasks run; no need to spawn for it
                self._idle += 1
                try:
                    await anyio.lowlevel.checkpoint()
                finally:
                    self._idle -= 1

    def _stop(self) -> None:
        """A critical step failed: start nothing more, cancel what runs."""
        self._stopping = self._halted = True
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()

    def _release(self, index: int) -> None:
        """Step `index` has finished: dependents whose dependencies are all finished
        become ready, or are skipped with a reason. Iterative: chains can be long."""
        spec = self.spec
        conditional = spec.mode is ExecutionMode.Conditional
        stack = [index]
        while stack:
            done = stack.pop()
            completed = self.records[done].status is StepStatus.Completed
            for dependent in spec.dependents[done]:
                self._waiting[dependent] -= 1
                if completed:
                    self._completed_deps[dependent] += 1
                if self._waiting[dependent]:
                    continue
                have = self._completed_deps[dependent]
                if have == len(spec.deps[dependent]) or (conditional and have):
                    heapq.heappush(self._ready, spec.position[dependent])
                elif not self._stopping:
                    self._skip(dependent, self._skip_reason(dependent, conditional))
                    stack.append(dependent)

    def _skip_reason(self, index: int, conditional: bool) -> str:
        if conditional:
            return "none of its dependencies completed"
        for dep in self.spec.deps[index]:
            record = self.records[dep]
            if record.status is not StepStatus.Completed:
                return f"dependency {self.spec.steps[dep].step_id!r} {record.status.value}"
        raise AssertionError("a step with every dependency completed was skipped")

    # -- one step --------------------------------------------------------------------

    async def _condition_holds(self, index: int, step: StepSpec, inputs: Mapping[str, Any]) -> bool:
        """Evaluate the step's condition; a false or failing one settles the step."""
        assert step.condition is not None
        try:
            holds = await step.condition.evaluate(inputs, f"step {step.step_id!r}")
        except PluginError as error:
            self._fail(index, step, error)
            return False
        if not holds:
            self._skip(index, f"condition {step.condition.source!r} is false")
            self._release(index)
        return holds

    async def _run_step(self, lane: Lane, index: int) -> None:
        """Run one step to its outcome, unless one of its attempts times out."""
        step = self.spec.steps[index]
        inputs = self._flow.inputs(index)
        if step.condition is not None and not await self._condition_holds(index, step, inputs):
            return
        self._running[index] = None
        lane.index = index
        lane.inputs = inputs
        await self._attempts(lane, 1)

    async def _attempts(self, lane: Lane, first: int) -> None:
        """Attempts `first`, `first` + 1, ... of the lane's step until one succeeds, or
        none may follow; it returns early when an attempt has timed out."""
        assert lane.index is not None
        index = lane.index
        step = self.spec.steps[index]
        record = self.records[index]
        inputs = lane.inputs
        timeout = step.timeout_seconds
        attempt = first
        while True:
            now = self._now()
            if attempt == 1:
                record.started_at = now
            lane.attempt = record.attempts = attempt
            record.status = StepStatus.Running
            self._step_statuses[step.step_id] = "running"
            if self._hub.listening:
                self._emit(ev.StepStarted, index, now, attempt=attempt)
            if self._debug:
                self._log.debug("step.started", step_id=step.step_id, attempt=attempt)
            journal = self.journal
            if journal is not None:
                try:
                    await journal.attempt_started(index, attempt)
                except PluginError as unrecorded:
                    lane.index = None
                    self._store_failed(index, step, unrecorded)
                    return
            if timeout:
                self._deadlines.arm(lane, now + timeout)
            error: Exception | None = None
            try:
                call = self._calls.start(index, step, inputs, attempt)
                if isinstance(call, tuple):  # its plugin is not initialized yet
                    call = self._calls.initialize_then_call(call, index, step, inputs, attempt)
                result = await call
                output = contribution(step.step_id, result)
            except Exception as exc:
                error = exc
            lane.key = 0  # disarmed: done in time
            if lane.timed_out:  # the deadline passed as the attempt was ending
                return
            if error is None and journal is not None:
                try:
                    blob = journal.encode(step.step_id, result)
                except PluginError as unstorable:  # not retried: it would fail again
                    lane.index = None
                    journal.attempt_ended(index, attempt, "failed", unstorable)
                    self._fail(index, step, unstorable)
                    return
                try:
                    await journal.step_completed(index, attempt, blob, self._next_in_lane(index))
                except PluginError as unrecorded:
                    lane.index = None
                    self._store_failed(index, step, unrecorded)
                    return
            if error is None:
                lane.index = None
                self._complete(index, step, result, output)
                return
            failure = _as_plugin_error(
                error, f"step {step.step_id!r}: {step.plugin_id}.{step.method_name}()"
            )
            delay = self._retry_or_fail(index, step, failure, error, attempt)
            if delay is None:
                lane.index = None
                return
            await anyio.sleep(delay)
            attempt += 1

    def _next_in_lane(self, index: int) -> int | None:
        """The dependent that step `index`'s completion makes ready and that its lane
        runs next, when that is known before the completion is recorded (nothing else
        ready, no condition to evaluate): the journal commits that dependent's attempt
        start with the completion, one transaction instead of two."""
        if self._ready or self._halted or self.spec.mode is ExecutionMode.Conditional:
            return None
        spec = self.spec
        follower: int | None = None
        for dependent in spec.dependents[index]:
            if (
                self._waiting[dependent] == 1
                and self._completed_deps[dependent] + 1 == len(spec.deps[dependent])
                and spec.steps[dependent].condition is None
                and (follower is None or spec.position[dependent] < spec.position[follower])
            ):
                follower = dependent
        return follower

    async def _settle_timeout(self, lane: Lane) -> None:
        """The lane's attempt outlived the step timeout: fail the step, or wait to retry
        it (the next lane resumes it)."""
        assert lane.index is not None
        lane.timed_out = False
        step = self.spec.steps[lane.index]
        failure = PluginError(
            PluginErrorCode.Timeout,
            f"step {step.step_id!r} timed out after {step.timeout:g} ms (attempt {lane.attempt})",
        )
        delay = self._retry_or_fail(lane.index, step, failure, failure, lane.attempt)
        if delay is None:
            lane.index = None
            return
        await anyio.sleep(delay)

    def _retry_or_fail(
        self, index: int, step: StepSpec, failure: PluginError, error: Exception, attempt: int
    ) -> float | None:
        """Attempt `attempt` failed with `error`: announce a retry and return the wait
        before it, or settle the step as failed and return None."""
        delay = self._retry_delay(step, error, attempt)
        if self.journal is not None:
            timed_out = failure.code is PluginErrorCode.Timeout
            self.journal.attempt_ended(
                index, attempt, "timed_out" if timed_out else "failed", failure
            )
        if delay is None:
            self._fail(index, step, failure)
            return None
        self.records[index].status = StepStatus.Retrying
        self._step_statuses[step.step_id] = "retrying"
        fields = error_fields(failure)
        self._emit(ev.StepRetrying, index, self._now(), attempt=attempt, delay=delay, **fields)
        self._log.info(
            "step.retrying",
            step_id=step.step_id,
            attempt=attempt,
            delay=round(delay, 3),
            **fields,
        )
        return delay

    def _retry_delay(self, step: StepSpec, error: Exception, attempt: int) -> float | None:
        """Seconds until the next attempt, or None if there is to be none."""
        policy = step.retry
        try:
            allowed = policy.allows(error, attempt, self._engine.retry_on)
        except Exception:  # a broken predicate must not take the engine down
            self._log.exception("step.retry_predicate_failed", step_id=step.step_id)
            allowed = False
        if not allowed:
            return None
        delay = policy.wait_before(attempt, self._engine._rng)
        assert self._scope is not None
        if self._now() + delay >= self._scope.deadline:
            return None  # the next attempt could not start before the workflow deadline
        return delay

    # -- step outcomes ---------------------------------------------------------------

    def _complete(self, index: int, step: StepSpec, result: Any, output: Mapping[str, Any]) -> None:
        record = self.records[index]
        record.result = result
        self._flow.record(index, output)
        now = self._now()
        self._end_step(index, StepStatus.Completed, now)
        if self._hub.listening or self._debug:
            duration = duration_ms(record.started_at, now) or 0.0
            self._emit(
                ev.StepCompleted,
                index,
                now,
                attempt=record.attempts,
                duration_ms=duration,
                progress=self.progress(),
            )
            if self._debug:
                self._log.debug("step.completed", step_id=step.step_id, duration_ms=duration)
        self._release(index)

    def _fail(self, index: int, step: StepSpec, error: PluginError) -> None:
        record = self.records[index]
        record.error = error
        now = self._now()
        self._end_step(index, StepStatus.Failed, now)
        fields = error_fields(error)
        self._emit(
            ev.StepFailed, index, now, attempt=record.attempts, progress=self.progress(), **fields
        )
        self._log.warning("step.failed", step_id=step.step_id, attempt=record.attempts, **fields)
        if step.critical:
            if self.error is None:
                self.error = PluginError(
                    error.code,
                    f"workflow {self.spec.workflow_id!r} failed: critical step "
                    f"{step.step_id!r} failed: {error.message}",
                    error.details,
                )
            self._stop()
        else:
            self._release(index)

    def _store_failed(self, index: int, step: StepSpec, failure: PluginError) -> None:
        """The store could not record step `index` (a full disk, say): the execution
        cannot go on durably, so it stops as a crash would stop it. Here the step and
        the execution fail with the store's error, whatever the step's criticality, and
        nothing is compensated; the store, written no more, keeps it unfinished, to be
        resumed once it works again."""
        self.journal = None
        self._store_lost = True
        self._fail(index, step, failure)
        if self.error is None:
            self.error = PluginError(
                failure.code,
                f"workflow {self.spec.workflow_id!r} failed: the store could not record "
                f"step {step.step_id!r}: {failure.message}",
            )
        self._stop()

    def _skip(self, index: int, reason: str) -> None:
        record = self.records[index]
        record.reason = reason
        now = self._now()
        self._end_step(index, StepStatus.Skipped, now)
        self._emit(ev.StepSkipped, index, now, reason=reason, progress=self.progress())
        if self._debug:
            self._log.debug("step.skipped", step_id=self.spec.steps[index].step_id, reason=reason)
