"""One run of one workload: on the bare anyio baseline, or on qtforge with every feature
armed. Both are coroutines for `anyio.run`; both time only the execution itself.

The baseline is one anyio task and one `anyio.Event` per step and no orchestration:
each step task waits on its dependencies' events, calls the step function (W1 hands
each step its predecessor's output), then sets its own event. Sync step functions go
through `anyio.to_thread.run_sync` with a limiter as large as qtforge's ``thread_limit``.

qtforge runs `AsyncPluginOrchestrator.execute_workflow` in blocking mode with status
tracking, data flow, the default 60 s step timeout and an `events()` subscriber
consuming concurrently; the clock stops once that subscriber has received the
workflow's final event.
"""

from __future__ import annotations

import functools
import gc
import tracemalloc
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from time import perf_counter
from types import TracebackType
from typing import Any, Self

import anyio
from _workloads import BenchPlugin, Shape, build_workflow, method_name, plugin_manager

from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode
from qtforge.orchestration import events as ev

_TERMINAL = (ev.WorkflowCompleted, ev.WorkflowFailed, ev.WorkflowCancelled)
_NO_INPUTS: Mapping[str, Any] = {}


@dataclass
class Run:
    """What one run measured.

    Attributes:
        seconds: Wall time of the execution.
        peak_bytes: With memory tracing, the tracemalloc peak during the execution over
            the traced size before it.
        events: Events the subscriber received (qtforge only).
        dropped: Events dropped because the subscriber's buffer was full.
    """

    seconds: float
    peak_bytes: int | None = None
    events: int = 0
    dropped: int = 0


class PeakMemory:
    """Traces allocations inside the ``with`` block; `peak` is the most allocated at any
    moment over what was allocated at entry (tracing starts at entry, so that is ~0)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.peak: int | None = None
        self._base = 0

    def __enter__(self) -> Self:
        if self.enabled:
            gc.collect()
            tracemalloc.start()
            self._base = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            self.peak = tracemalloc.get_traced_memory()[1] - self._base
            tracemalloc.stop()


async def run_bare(
    shape: Shape,
    *,
    sync: bool,
    thread_limit: int,
    trace_memory: bool = False,
    around: AbstractContextManager[object] | None = None,
) -> Run:
    """Run `shape` as one anyio task plus one `anyio.Event` per step.

    `around` wraps the timed section only (a profiler, say).
    """
    fn = getattr(BenchPlugin(), method_name(shape, sync))
    deps = shape.deps
    passes_data = shape.kind == "inc"
    initial = shape.initial_data or _NO_INPUTS
    limiter = anyio.CapacityLimiter(thread_limit)

    with PeakMemory(trace_memory) as memory, around or nullcontext():
        start = perf_counter()
        done = [anyio.Event() for _ in deps]
        outputs: list[Any] = [None] * len(deps)

        async def step(i: int) -> None:
            for d in deps[i]:
                await done[d].wait()
            inputs = outputs[deps[i][0]] if passes_data and deps[i] else initial
            if sync:
                call = functools.partial(fn, **inputs)
                outputs[i] = await anyio.to_thread.run_sync(call, limiter=limiter)
            else:
                outputs[i] = await fn(**inputs)
            done[i].set()

        async with anyio.create_task_group() as task_group:
            for i in range(len(deps)):
                task_group.start_soon(step, i)
        seconds = perf_counter() - start

    if passes_data:
        assert outputs[-1] == {"value": shape.steps}, outputs[-1]
    return Run(seconds, memory.peak)


class _Subscriber:
    """Consumes an orchestrator's event stream, counting what it receives."""

    def __init__(self, stream: ev.EventStream) -> None:
        self.stream = stream
        self.received = 0
        self.dropped = 0
        self.finished = anyio.Event()

    async def consume(self) -> None:
        async for event in self.stream:
            if isinstance(event, ev.EventsDropped):
                self.dropped += event.count
                continue
            self.received += 1
            if isinstance(event, _TERMINAL):
                self.finished.set()


async def run_qtforge(
    shape: Shape,
    *,
    sync: bool,
    thread_limit: int,
    mode: ExecutionMode = ExecutionMode.Parallel,
    event_buffer: int | None = None,
    subscribe: bool = True,
    step_options: Mapping[str, Any] | None = None,
    trace_memory: bool = False,
    around: AbstractContextManager[object] | None = None,
) -> Run:
    """Run `shape` through `AsyncPluginOrchestrator` with every feature armed.

    `event_buffer` is the subscriber's buffer (default: the orchestrator's default).
    To measure what a feature costs: ``subscribe=False`` runs without the subscriber
    (the clock then stops when `execute_workflow` returns), `step_options` are passed
    to every `WorkflowStep` (``{"timeout": None}``, say). `around` wraps the timed
    section only (a profiler, say).
    """
    workflow = build_workflow(shape, sync=sync, mode=mode, **(step_options or {}))
    options = {"thread_limit": thread_limit}
    if event_buffer is not None:
        options["event_buffer"] = event_buffer
    async with AsyncPluginOrchestrator(plugin_manager(), **options) as engine:
        engine.register_workflow(workflow).value()
        async with anyio.create_task_group() as task_group:
            subscriber = _Subscriber(engine.events()) if subscribe else None
            if subscriber is not None:
                task_group.start_soon(subscriber.consume)
            with PeakMemory(trace_memory) as memory, around or nullcontext():
                start = perf_counter()
                started = await engine.execute_workflow(workflow.workflow_id, shape.initial_data)
                if subscriber is not None:
                    await subscriber.finished.wait()
                seconds = perf_counter() - start
            task_group.cancel_scope.cancel()
        await _check_outcome(engine, started.value(), shape)
    if subscriber is None:
        return Run(seconds, memory.peak)
    return Run(seconds, memory.peak, subscriber.received, subscriber.dropped)


async def _check_outcome(engine: AsyncPluginOrchestrator, execution_id: str, shape: Shape) -> None:
    """Fail loudly if the execution did not run every step to completion."""
    status = (await engine.get_workflow_status(execution_id)).value()
    if status["status"] != "completed" or status["completed_steps"] != shape.steps:
        raise RuntimeError(f"{shape.key} did not complete: {status['status']}, {status['error']}")
    if shape.kind == "inc":
        data = (await engine.get_workflow_results(execution_id)).value()["data"]
        assert data == {"value": shape.steps}, data
