"""Executors compared: CPU-bound steps on threads, processes and Dask, and each
executor's cost per step.

    .venv/bin/python benchmarks/bench_executors.py            # full run (~1 min), Markdown
    .venv/bin/python benchmarks/bench_executors.py --quick    # a smoke run (~15 s)
    .venv/bin/python benchmarks/bench_executors.py --backend trio

See benchmarks/README.md ("Executors") for what is measured and the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import anyio

from qtforge import PluginManager
from qtforge.executors import DaskExecutor, Executor, ProcessExecutor
from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode, Workflow, WorkflowStep


class Cpu:
    """The benchmark's plugin: pure-Python work, and steps that do nothing."""

    plugin_id = "cpu"

    def burn(self, n: int) -> dict[str, int]:
        total = 0
        for i in range(n):
            total += i * i % 7
        return {}

    def noop(self) -> None:
        return None

    async def anoop(self) -> None:
        return None


@dataclass(frozen=True)
class Setup:
    """An executor configuration: the orchestrator options, and a factory for them
    (executors are made fresh for each orchestrator, which closes them)."""

    label: str
    options: Callable[[], Mapping[str, Any]]
    method: str = "noop"


def dask_executor() -> Executor:
    return DaskExecutor(cluster_options={"n_workers": os.cpu_count() or 1, "threads_per_worker": 1})


SETUPS = {
    "default": Setup("default path (sync method in a thread)", dict),
    "default-async": Setup("default path (async method on the loop)", dict, "anoop"),
    "async": Setup(
        "async executor (sync method on the loop)", lambda: {"default_executor": "async"}
    ),
    "thread": Setup("thread executor", lambda: {"default_executor": "thread"}),
    "process": Setup(
        "process executor",
        lambda: {"default_executor": "x", "executors": {"x": ProcessExecutor()}},
    ),
    "dask": Setup(
        "dask executor (LocalCluster, worker processes)",
        lambda: {"default_executor": "x", "executors": {"x": dask_executor()}},
    ),
}


def build(name: str, count: int, method: str, params: Mapping[str, Any], chain: bool) -> Workflow:
    mode = ExecutionMode.Sequential if chain else ExecutionMode.Parallel
    workflow = Workflow(name).set_execution_mode(mode)
    for i in range(count):
        after = [f"s{i - 1}"] if chain and i else []
        workflow.add_step(
            WorkflowStep(f"s{i}", "cpu", method, parameters=dict(params), dependencies=after)
        )
    return workflow


async def interleaved(
    setups: list[Setup], workflows: list[Workflow], rounds: int
) -> list[list[float]]:
    """Wall times of `rounds` executions of ``workflows[i]`` under ``setups[i]``, each
    after one warm-up execution (which starts worker processes or the cluster). The
    orchestrators stay open side by side and the rounds alternate between them, so that
    a load change on this shared machine hits every setup alike."""
    manager = PluginManager()
    manager.register_plugin(Cpu())
    times: list[list[float]] = [[] for _ in setups]
    async with contextlib.AsyncExitStack() as stack:
        orchestrators = []
        for setup, workflow in zip(setups, workflows, strict=True):
            orchestrator = await stack.enter_async_context(
                AsyncPluginOrchestrator(manager, **setup.options())
            )
            orchestrator.register_workflow(workflow).value()
            orchestrators.append(orchestrator)
        for round_ in range(rounds + 1):
            for i, (setup, workflow) in enumerate(zip(setups, workflows, strict=True)):
                began = time.perf_counter()
                results = (await orchestrators[i].run_workflow(workflow.workflow_id)).value()
                took = time.perf_counter() - began
                if results["status"] != "completed":
                    raise RuntimeError(f"{setup.label}: {results['error']}")
                if round_:
                    times[i].append(took)
    return times


def figure(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def serial(n: int, steps: int, rounds: int) -> float:
    """Median wall time of the CPU-bound work done in a plain loop: no orchestrator."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(steps):
            Cpu().burn(n)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    rounds = 2 if args.quick else args.rounds
    cpu_steps = 8 if args.quick else args.steps
    overhead_steps = 50 if args.quick else 200
    n = args.work
    plain = serial(n, cpu_steps, rounds)
    print(
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, backend {args.backend}, "
        f"python {platform.python_version()}, anyio {version('anyio')}, "
        f"distributed {version('distributed')}, cpus {os.cpu_count()}, "
        f"median of {rounds} interleaved rounds after a warm-up round, "
        f"load average before: {os.getloadavg()[0]:.2f}",
    )
    print(
        f"- CPU-bound workflow: {cpu_steps} independent steps in Parallel mode, each "
        f"burn({n:,}): {plain / cpu_steps * 1000:.0f} ms of pure-Python work when run "
        f"serially without an orchestrator ({plain:.2f} s for all)"
    )
    print(f"- per-step overhead: {overhead_steps} no-op steps\n")
    print("| workload | executor | wall s | per step | speed-up vs threads |")
    print("|---|---|---:|---:|---:|")
    print("running the CPU-bound workflow ...", file=sys.stderr, flush=True)
    names = ["default", "process", "dask"]
    cpu = build("cpu", cpu_steps, "burn", {"n": n}, chain=False)
    walls = [
        statistics.median(each)
        for each in await interleaved([SETUPS[name] for name in names], [cpu] * 3, rounds)
    ]
    for name, wall in zip(names, walls, strict=True):
        print(
            f"| CPU-bound, {cpu_steps} steps | {SETUPS[name].label} | {figure(wall)} "
            f"| {figure(wall / cpu_steps * 1000)} ms | {walls[0] / wall:.2f}x |",
            flush=True,
        )
    for chain, shape in ((True, "chain (one at a time)"), (False, "independent (Parallel)")):
        print(f"running no-op steps, {shape} ...", file=sys.stderr, flush=True)
        counts = [
            overhead_steps // 4 if name == "dask" and chain else overhead_steps for name in SETUPS
        ]
        flows = [
            build(f"noop-{name}", count, setup.method, {}, chain=chain)
            for (name, setup), count in zip(SETUPS.items(), counts, strict=True)
        ]
        times = await interleaved(list(SETUPS.values()), flows, rounds)
        for setup, count, each in zip(SETUPS.values(), counts, times, strict=True):
            wall = statistics.median(each)
            print(
                f"| no-op steps, {count}, {shape} | {setup.label} | {figure(wall)} "
                f"| {figure(wall / count * 1e6)} µs | |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--steps", type=int, default=32, help="CPU-bound steps (default 32)")
    parser.add_argument(
        "--work", type=int, default=2_000_000, help="burn(n) per CPU-bound step (~0.1 s here)"
    )
    anyio.run(main, parser.parse_args(), backend=parser.parse_args().backend)
