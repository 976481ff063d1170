"""Plugins and small builders shared by the engine tests.

`Probe` is the workhorse: its methods record what they saw (inputs, attempt, loop time,
thread, overlap with other steps, cancellation) so a test can pin the scheduler's
behaviour from the outside. The builders keep workflow definitions to one line a step.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel

from qtforge import PluginManager
from qtforge.orchestration import (
    AsyncPluginOrchestrator,
    ExecutionMode,
    StepContext,
    Workflow,
    WorkflowStep,
)

__all__ = [
    "THREAD_WAIT_LIMIT",
    "AsyncLifecycle",
    "BrokenInitialize",
    "Call",
    "Probe",
    "SyncLifecycle",
    "manager_with",
    "non_retryable_error",
    "run",
    "start",
    "statuses",
    "step",
    "workflow",
]

THREAD_WAIT_LIMIT = 10.0
"""Longest a blocking sync step waits to be released, so a bug cannot hang a test."""


class Call:
    """What one attempt of a `Probe` step saw.

    `started_at` is the loop's clock (`anyio.current_time`) for async steps and
    `time.monotonic` for sync ones, which cannot read the loop's clock.
    """

    __slots__ = ("attempt", "inputs", "live_inputs", "started_at", "step_id")

    def __init__(self, context: StepContext, started_at: float) -> None:
        self.step_id = context.step_id
        self.attempt = context.attempt
        self.inputs = dict(context.inputs)  # a snapshot, taken when the attempt starts
        self.live_inputs = context.inputs  # the mapping itself, to catch later mutation
        self.started_at = started_at


class Probe:
    """A plugin whose steps record what they see; registered as ``"probe"``.

    Async methods run on the event loop, ``*_sync`` methods in worker threads. Every
    method records a `Call`, ``("start", step_id)`` / ``("end", step_id)`` in `log`,
    and how many steps overlapped (`peak`).
    """

    plugin_id = "probe"

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.log: list[tuple[str, str]] = []
        self.cancelled: list[str] = []  # async steps that saw their cancellation
        self.peak = 0
        self.release = threading.Event()  # lets `block_sync` steps return
        self.saw_cancelled: dict[str, bool] = {}  # block_sync: context.cancelled at the end
        self.threads_exited: list[str] = []
        self._active = 0
        self._lock = threading.Lock()
        self._started: dict[str, anyio.Event] = {}
        self._arrived = 0
        self._everyone: anyio.Event | None = None
        self._gate: anyio.Event | None = None

    # -- bookkeeping -------------------------------------------------------------------

    def attempts_of(self, step_id: str) -> list[Call]:
        return [call for call in self.calls if call.step_id == step_id]

    def inputs_of(self, step_id: str) -> dict[str, Any]:
        """The input mapping of the step's last attempt."""
        return self.attempts_of(step_id)[-1].inputs

    def gate(self) -> anyio.Event:
        """What async `report` steps wait for (create it on the loop before it is needed)."""
        if self._gate is None:
            self._gate = anyio.Event()
        return self._gate

    def started(self, step_id: str) -> anyio.Event:
        """Set once `step_id` has started (async steps and `block_sync`); call on the loop."""
        return self._started.setdefault(step_id, anyio.Event())

    @contextlib.contextmanager
    def _running(self, context: StepContext, now: float) -> Iterator[None]:
        self.calls.append(Call(context, now))
        with self._lock:
            self.log.append(("start", context.step_id))
            self._active += 1
            self.peak = max(self.peak, self._active)
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                self.log.append(("end", context.step_id))

    @contextlib.asynccontextmanager
    async def _async_step(self, context: StepContext) -> AsyncIterator[None]:
        with self._running(context, anyio.current_time()):
            self.started(context.step_id).set()
            try:
                yield
            except anyio.get_cancelled_exc_class():
                self.cancelled.append(context.step_id)
                raise

    # -- async steps -------------------------------------------------------------------

    async def emit(self, context: StepContext, returns: Any = None, sleep: float = 0.0) -> Any:
        """Return `returns` after `sleep` seconds (and at least two checkpoints)."""
        async with self._async_step(context):
            await anyio.lowlevel.checkpoint()
            await anyio.sleep(sleep)
        return returns

    async def echo(self, context: StepContext) -> Mapping[str, Any]:
        """Return the step's own input mapping, as a pass-through step would."""
        async with self._async_step(context):
            return context.inputs

    async def scribble(self, context: StepContext) -> bool:
        """Try to write ``"scribbled"`` into the step's own input mapping; True if it took."""
        async with self._async_step(context):
            try:
                context.inputs["scribbled"] = context.step_id  # type: ignore[index]  # on purpose
            except TypeError:
                return False
        return True

    async def hang(self, context: StepContext) -> None:
        """Wait until cancelled."""
        async with self._async_step(context):
            await anyio.sleep_forever()

    async def fail(
        self,
        context: StepContext,
        message: str = "boom",
        times: int | None = None,
        sleep: float = 0.0,
    ) -> Any:
        """Raise ``RuntimeError(f"{message} #{attempt}")`` after `sleep` seconds, on the first
        `times` attempts (every attempt if ``None``); later attempts return a mapping."""
        async with self._async_step(context):
            await anyio.sleep(sleep)
            if times is None or context.attempt <= times:
                raise RuntimeError(f"{message} #{context.attempt}")
        return {"recovered_on": context.attempt}

    async def fail_after_start(self, context: StepContext, other: str) -> None:
        """Raise once step `other` has started, so it is running when this one fails."""
        async with self._async_step(context):
            await self.started(other).wait()
            raise RuntimeError(f"{context.step_id} failed while {other} runs")

    async def raise_error(self, context: StepContext, error: BaseException) -> None:
        """Raise `error` as it is (`error` is a step parameter)."""
        async with self._async_step(context):
            await anyio.lowlevel.checkpoint()
            raise error

    async def rendezvous(self, context: StepContext, parties: int) -> str:
        """Wait until `parties` steps are inside this method at once."""
        async with self._async_step(context):
            if self._everyone is None:
                self._everyone = anyio.Event()
            self._arrived += 1
            if self._arrived == parties:
                self._everyone.set()
            await self._everyone.wait()
        return context.step_id

    async def report(self, context: StepContext, fraction: float) -> None:
        """Report `fraction` of progress, then wait until `gate` is set."""
        async with self._async_step(context):
            context.report_progress(fraction, f"{context.step_id} at {fraction:g}")
            await self.gate().wait()

    # -- sync steps (worker threads) ---------------------------------------------------

    def _thread_started(self, context: StepContext) -> None:
        """Set `started` for a step running in a worker thread."""
        anyio.from_thread.run_sync(lambda: self.started(context.step_id).set())

    def emit_sync(self, context: StepContext, returns: Any = None, sleep: float = 0.0) -> Any:
        """`emit`, in a worker thread."""
        with self._running(context, time.monotonic()):
            time.sleep(sleep)
        return returns

    def block_sync(self, context: StepContext, cooperative: bool = True) -> str:
        """Block until `release` is set or, if `cooperative`, `context.cancelled` turns true."""
        with self._running(context, time.monotonic()):
            self._thread_started(context)
            deadline = time.monotonic() + THREAD_WAIT_LIMIT
            while not self.release.wait(0.005) and time.monotonic() < deadline:
                if cooperative and context.cancelled:
                    break
            self.saw_cancelled[context.step_id] = context.cancelled
        self.threads_exited.append(context.step_id)
        return "late result"

    def report_sync(self, context: StepContext, fraction: float) -> None:
        """`report`, in a worker thread."""
        with self._running(context, time.monotonic()):
            context.report_progress(fraction, f"{context.step_id} at {fraction:g}")
            self.release.wait(THREAD_WAIT_LIMIT)


class SyncLifecycle:
    """Records its plain ``initialize``/``shutdown`` hooks and calls, with their threads."""

    plugin_id = "sync_life"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.hook_threads: list[int] = []

    def initialize(self) -> None:
        self.events.append("initialize")
        self.hook_threads.append(threading.get_ident())

    def shutdown(self) -> None:
        self.events.append("shutdown")
        self.hook_threads.append(threading.get_ident())

    async def work(self) -> None:
        self.events.append("work")


class AsyncLifecycle(SyncLifecycle):
    """`SyncLifecycle` with ``async def`` hooks."""

    plugin_id = "async_life"

    async def initialize(self) -> None:  # type: ignore[override]  # async variant on purpose
        await anyio.lowlevel.checkpoint()
        self.events.append("initialize")

    async def shutdown(self) -> None:  # type: ignore[override]  # async variant on purpose
        await anyio.lowlevel.checkpoint()
        self.events.append("shutdown")


class BrokenInitialize:
    """A plugin whose ``initialize()`` raises."""

    plugin_id = "broken"

    def __init__(self) -> None:
        self.worked = False

    async def initialize(self) -> None:
        raise OSError("database unreachable")

    async def work(self) -> None:
        self.worked = True


def non_retryable_error(message: str) -> Exception:
    """An exception marked ``non_retryable = True``, as Temporal's ApplicationError."""
    error = RuntimeError(message)
    error.non_retryable = True  # type: ignore[attr-defined]  # the marker the engine reads
    return error


# -- builders -----------------------------------------------------------------------------


def manager_with(*plugins: object) -> PluginManager:
    """A manager holding exactly `plugins` (no entry-point discovery)."""
    manager = PluginManager()
    for plugin in plugins:
        manager.register_plugin(plugin).value()
    return manager


def step(
    step_id: str,
    method: str = "emit",
    *,
    after: Sequence[str] = (),
    plugin: str = "probe",
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> WorkflowStep:
    """A step calling ``plugin.method``, depending on the steps in `after`."""
    return WorkflowStep(
        step_id,
        plugin,
        method,
        dependencies=list(after),
        parameters=dict(params or {}),
        **fields,
    )


def workflow(
    workflow_id: str,
    *steps: WorkflowStep,
    mode: ExecutionMode = ExecutionMode.Sequential,
    timeout: float | None = None,
) -> Workflow:
    """A workflow of `steps` in `mode`, with an optional whole-run `timeout` in ms."""
    built = Workflow(workflow_id, workflow_id).set_execution_mode(mode).set_timeout(timeout)
    for each in steps:
        built.add_step(each)
    return built


async def run(
    orchestrator: AsyncPluginOrchestrator,
    built: Workflow,
    initial_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Register `built`, execute it to the end, and return its results dictionary."""
    orchestrator.register_workflow(built).value()
    execution_id = (await orchestrator.execute_workflow(built.workflow_id, initial_data)).value()
    return (await orchestrator.get_workflow_results(execution_id)).value()


async def start(
    orchestrator: AsyncPluginOrchestrator,
    built: Workflow,
    initial_data: Mapping[str, Any] | None = None,
) -> str:
    """Register `built` and start it in the background; returns the execution id."""
    orchestrator.register_workflow(built).value()
    started = await orchestrator.execute_workflow(built.workflow_id, initial_data, True)
    return started.value()


def statuses(results: Mapping[str, Any]) -> dict[str, str]:
    """Step id → final status string, from a results (or status) dictionary."""
    steps = results["steps"]
    return {
        key: value if isinstance(value, str) else value["status"] for key, value in steps.items()
    }
