"""The measurements behind ``run.py``; each returns report `Row`s.

Every comparison is measured in the same process and the same rounds, interleaved
(bare and qtforge alternate which goes first), after warm-up rounds that are thrown
away, because absolute timings on shared machines drift by up to 2x between rounds.
"""

from __future__ import annotations

import functools
import gc
import graphlib
import statistics
import sys
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter, perf_counter_ns

import anyio
from _report import Row
from _runners import Run, run_bare, run_qtforge
from _workloads import Shape, build_workflow, chain, independent, plugin_manager
from anyio.from_thread import start_blocking_portal

from qtforge.orchestration import ExecutionMode, PluginOrchestrator

ASYNC_RATIO_TARGET = 0.5
W4_TARGET_S = 0.1
MEMORY_TARGET_KIB = 3.0
FACADE_TARGET_US = 300.0


@dataclass(frozen=True)
class Settings:
    backend: str
    rounds: int
    warmup: int
    thread_limit: int
    mode: ExecutionMode = ExecutionMode.Parallel
    event_buffer: int | None = None

    def round_label(self, round_: int) -> str:
        return f"round {round_ + 1}" + (" (warm-up)" if round_ < self.warmup else "")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _paired_ratio(qtforge: Sequence[float], bare: Sequence[float]) -> float:
    """Median of the per-round ratios: drift between rounds cancels out."""
    return statistics.median(q / b for q, b in zip(qtforge, bare, strict=True))


def _run(
    side: str,
    shape: Shape,
    settings: Settings,
    *,
    sync: bool = False,
    trace_memory: bool = False,
) -> Run:
    """One run of `shape` in a fresh event loop, on `side` (``"bare"`` or ``"qtforge"``)."""
    options = {"sync": sync, "thread_limit": _thread_limit(shape, settings)}
    runner = functools.partial(run_bare, shape, trace_memory=trace_memory, **options)
    if side == "qtforge":
        runner = functools.partial(
            run_qtforge,
            shape,
            mode=settings.mode,
            event_buffer=settings.event_buffer,
            trace_memory=trace_memory,
            **options,
        )
    gc.collect()
    result: Run = anyio.run(runner, backend=settings.backend)
    return result


def _thread_limit(shape: Shape, settings: Settings) -> int:
    """W4 with sync steps gets a limiter sized for the workload (both sides alike)."""
    if shape.kind == "nap":
        return max(settings.thread_limit, shape.steps)
    return settings.thread_limit


def workloads(shapes: Sequence[Shape], *, sync: bool, settings: Settings) -> list[Row]:
    """W1-W4 on both sides, interleaved over warm-up + measured rounds."""
    bare: dict[str, list[float]] = {shape.key: [] for shape in shapes}
    ours: dict[str, list[Run]] = {shape.key: [] for shape in shapes}
    for round_ in range(settings.warmup + settings.rounds):
        progress(f"  {'sync' if sync else 'async'} {settings.round_label(round_)}")
        for shape in shapes:
            order = ("bare", "qtforge") if round_ % 2 == 0 else ("qtforge", "bare")
            runs = {side: _run(side, shape, settings, sync=sync) for side in order}
            if round_ >= settings.warmup:
                bare[shape.key].append(runs["bare"].seconds)
                ours[shape.key].append(runs["qtforge"])
    return [
        _workload_row(shape, sync, bare[shape.key], ours[shape.key], settings) for shape in shapes
    ]


def _workload_row(
    shape: Shape, sync: bool, bare: list[float], ours: list[Run], settings: Settings
) -> Row:
    seconds = [run.seconds for run in ours]
    row = Row(
        group="sync steps" if sync else "async steps",
        name=f"{shape.key} {shape.title}",
        unit="µs/step",
        bare=1e6 * statistics.median(bare) / shape.steps,
        qtforge=1e6 * statistics.median(seconds) / shape.steps,
        ratio=_paired_ratio(seconds, bare),
        extra={
            "steps": shape.steps,
            "mode": settings.mode.name,
            "thread_limit": _thread_limit(shape, settings),
            "events_received": [run.events for run in ours],
            "events_dropped": [run.dropped for run in ours],
            "bare_seconds": bare,
            "qtforge_seconds": seconds,
        },
    )
    if shape.kind == "nap":
        row.name += ": wall time"
        row.unit = "s"
        row.bare = statistics.median(bare)
        row.qtforge = statistics.median(seconds)
        row.target = f"< {W4_TARGET_S:g} s"
        row.met = row.qtforge < W4_TARGET_S
    elif not sync:
        row.target = f"≤ {ASYNC_RATIO_TARGET:g}x bare"
        row.met = row.ratio is not None and row.ratio <= ASYNC_RATIO_TARGET
    return row


def memory(sizes: Sequence[int], settings: Settings) -> list[Row]:
    """tracemalloc peak per step while W3-shaped executions of each size run."""
    for side in ("bare", "qtforge"):  # warm caches and lazy imports under tracing
        _run(side, independent(100), settings, trace_memory=True)
    rows = []
    for n in sizes:
        progress(f"  memory, {n:,} steps")
        shape = independent(n)
        bare = _run("bare", shape, settings, trace_memory=True)
        ours = _run("qtforge", shape, settings, trace_memory=True)
        bare_kib, our_kib = _kib_per_step(bare, n), _kib_per_step(ours, n)
        rows.append(
            Row(
                group="memory",
                name=f"peak per step, {n:,} independent async steps (tracemalloc)",
                unit="KiB/step",
                bare=bare_kib,
                qtforge=our_kib,
                ratio=our_kib / bare_kib,
                target=f"< {MEMORY_TARGET_KIB:g} KiB",
                met=our_kib < MEMORY_TARGET_KIB,
                extra={
                    "steps": n,
                    "bare_peak_bytes": bare.peak_bytes,
                    "qtforge_peak_bytes": ours.peak_bytes,
                    "events_dropped": [ours.dropped],
                },
            )
        )
    return rows


def _kib_per_step(run: Run, steps: int) -> float:
    assert run.peak_bytes is not None
    return run.peak_bytes / 1024 / steps


def facade(calls: int, steps: int, settings: Settings) -> list[Row]:
    """`PluginOrchestrator.get_workflow_status` on a finished execution, against a bare
    `BlockingPortal.call` of a no-op function, the two called in turn."""
    shape = independent(steps)
    ours: list[float] = []
    bare: list[float] = []
    with (
        PluginOrchestrator(plugin_manager(), backend=settings.backend) as orchestrator,
        start_blocking_portal(settings.backend) as portal,
    ):
        workflow = build_workflow(shape)
        orchestrator.register_workflow(workflow).value()
        execution_id = orchestrator.execute_workflow(workflow.workflow_id).value()
        assert orchestrator.get_workflow_status(execution_id).value()["status"] == "completed"
        query = functools.partial(orchestrator.get_workflow_status, execution_id)
        bare_call = functools.partial(portal.call, _nothing)
        for round_ in range(settings.warmup + settings.rounds):
            progress(f"  facade {settings.round_label(round_)}")
            timed_ours, timed_bare = _time_alternately(query, bare_call, calls)
            if round_ >= settings.warmup:
                ours.extend(timed_ours)
                bare.extend(timed_bare)
    rows = []
    for label, pick in (("median", statistics.median), ("p95", _p95)):
        rows.append(
            Row(
                group="facade",
                name=f"get_workflow_status round trip, {label} ({steps}-step execution)",
                unit="µs",
                bare=pick(bare),
                qtforge=pick(ours),
                ratio=pick(ours) / pick(bare),
                extra={"calls": len(ours), "workflow_steps": steps},
            )
        )
    rows[0].target = f"< {FACADE_TARGET_US:g} µs"
    rows[0].met = rows[0].qtforge < FACADE_TARGET_US
    return rows


def _nothing() -> None:
    return None


def _time_alternately(
    first: Callable[[], object], second: Callable[[], object], calls: int
) -> tuple[list[float], list[float]]:
    """µs per call of each, calling them in turn so that drift hits both alike."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(calls):
        for call, timed in zip((first, second), samples, strict=True):
            start = perf_counter_ns()
            call()
            timed.append((perf_counter_ns() - start) / 1000)
    return samples


def _p95(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def registration(steps: int, settings: Settings) -> list[Row]:
    """Building and registering a `steps`-long chain, against the stdlib's
    `graphlib.TopologicalSorter` ordering the same graph."""
    shape = chain(steps)
    graph = {f"s{i}": [f"s{d}" for d in deps] for i, deps in enumerate(shape.deps)}
    build: list[float] = []
    register: list[float] = []
    stdlib: list[float] = []
    for round_ in range(settings.warmup + settings.rounds):
        progress(f"  registration {settings.round_label(round_)}")
        gc.collect()
        start = perf_counter()
        workflow = build_workflow(shape)
        built = perf_counter()
        with PluginOrchestrator(plugin_manager()) as orchestrator:
            orchestrator.register_workflow(workflow).value()
        registered = perf_counter()
        assert len(tuple(graphlib.TopologicalSorter(graph).static_order())) == steps
        ordered = perf_counter()
        if round_ >= settings.warmup:
            build.append(built - start)
            register.append(registered - built)
            stdlib.append(ordered - registered)
    extra = {
        "steps": steps,
        "build_seconds": build,
        "register_seconds": register,
        "graphlib_seconds": stdlib,
    }
    return [
        Row(
            group="registration",
            name=f"register_workflow (validate + snapshot), chain of {steps:,}",
            unit="µs/step",
            bare=1e6 * statistics.median(stdlib) / steps,
            qtforge=1e6 * statistics.median(register) / steps,
            ratio=_paired_ratio(register, stdlib),
            extra=extra,
        ),
        Row(
            group="registration",
            name=f"building the Workflow (WorkflowStep + add_step), {steps:,} steps",
            unit="µs/step",
            bare=None,
            qtforge=1e6 * statistics.median(build) / steps,
            ratio=None,
            extra=extra,
        ),
        Row(
            group="registration",
            name=f"memory held by the registered snapshot, {steps:,} steps (tracemalloc)",
            unit="KiB/step",
            bare=None,
            qtforge=_registered_bytes(shape) / 1024 / steps,
            ratio=None,
        ),
    ]


def _registered_bytes(shape: Shape) -> int:
    """What registering `shape` allocates and keeps (the builder already exists)."""
    workflow = build_workflow(shape)
    with PluginOrchestrator(plugin_manager()) as orchestrator:
        gc.collect()
        tracemalloc.start()
        try:
            orchestrator.register_workflow(workflow).value()
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    return held
