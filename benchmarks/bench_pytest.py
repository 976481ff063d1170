"""pytest-benchmark cases: W1-W4 on the bare anyio baseline and on qtforge, side by side,
plus the facade's round trip and registration.

Never part of the unit tests: the suite's ``testpaths`` is ``tests/``, and this file's
name does not match ``test_*.py``, so only naming it runs it:

    .venv/bin/python -m pytest benchmarks/bench_pytest.py

pytest-benchmark times the whole `anyio.run` (event loop and orchestrator set-up
included); ``extra_info["us_per_step"]`` holds the execution alone, as ``run.py``
reports it. Every qtforge case fails if the workflow does not complete.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from _runners import Run, run_bare, run_qtforge
from _workloads import Shape, build_workflow, chain, fan, independent, plugin_manager, sleepers

from qtforge.orchestration import PluginOrchestrator

SHAPES = [chain(1_000), fan(1_000), independent(10_000), sleepers(200)]
RUNNERS: dict[str, Callable[..., Any]] = {"bare": run_bare, "qtforge": run_qtforge}
THREAD_LIMIT = 32


@pytest.mark.parametrize("side", list(RUNNERS))
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("shape", SHAPES, ids=[shape.key for shape in SHAPES])
def test_workload(benchmark: Any, shape: Shape, sync: bool, side: str) -> None:
    """One execution of the workload runs every step to completion on this side."""
    benchmark.group = f"{shape.key} {'sync' if sync else 'async'}"
    limit = max(THREAD_LIMIT, shape.steps) if shape.kind == "nap" else THREAD_LIMIT
    runner = functools.partial(RUNNERS[side], shape, sync=sync, thread_limit=limit)
    run: Run = benchmark.pedantic(anyio.run, (runner,), rounds=5, warmup_rounds=1)
    benchmark.extra_info["us_per_step"] = 1e6 * run.seconds / shape.steps


def test_facade_status_round_trip(benchmark: Any) -> None:
    """`PluginOrchestrator.get_workflow_status` answers for a finished execution."""
    benchmark.group = "facade"
    shape = independent(10)
    with PluginOrchestrator(plugin_manager()) as orchestrator:
        workflow = build_workflow(shape)
        orchestrator.register_workflow(workflow).value()
        execution_id = orchestrator.execute_workflow(workflow.workflow_id).value()
        status = benchmark(orchestrator.get_workflow_status, execution_id)
    assert status.value()["status"] == "completed"


def test_register_100k_chain(benchmark: Any) -> None:
    """A 100,000-step chain validates and registers."""
    benchmark.group = "registration"
    workflow = build_workflow(chain(100_000))

    def register() -> None:
        with PluginOrchestrator(plugin_manager()) as orchestrator:
            orchestrator.register_workflow(workflow).value()

    benchmark.pedantic(register, rounds=3, warmup_rounds=1)
