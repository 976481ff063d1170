"""Execution modes, conditions and failure propagation of `AsyncPluginOrchestrator` (SPEC 5)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from plugins_for_tests import Probe, manager_with, run, statuses, step, workflow

from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode, Workflow

pytestmark = pytest.mark.anyio

ALL_MODES = [pytest.param(mode, id=mode.value) for mode in ExecutionMode]


def _sync_condition(inputs: Mapping[str, Any]) -> bool:
    return bool(inputs["row_count"] < 10000)


async def _async_condition(inputs: Mapping[str, Any]) -> bool:
    await anyio.lowlevel.checkpoint()
    return bool(inputs["row_count"] < 10000)


CONDITIONS = [
    pytest.param("row_count < 10000", id="string"),
    pytest.param(_sync_condition, id="sync-callable"),
    pytest.param(_async_condition, id="async-callable"),
]


def _skip_reason(mode: ExecutionMode, dependency: str, status: str) -> str:
    """What a step whose only dependency did not complete is told, per mode."""
    if mode is ExecutionMode.Conditional:
        return "none of its dependencies completed"
    return f"dependency {dependency!r} {status}"


def _reasons(results: Mapping[str, Any]) -> dict[str, str]:
    return {
        step_id: entry["reason"] for step_id, entry in results["steps"].items() if "reason" in entry
    }


# -- Sequential -------------------------------------------------------------------------------


async def test_sequential_runs_one_step_at_a_time_in_topological_order() -> None:
    """Sequential runs steps one by one, dependencies first, ties in add_step order."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "seq",
                step("a", params={"sleep": 0.002}),
                step("b", after=["c"]),
                step("c", params={"sleep": 0.002}),
                step("d", "emit_sync", after=["a"], params={"sleep": 0.002}),
                step("e"),
            ),
        )
    order = ["a", "c", "b", "d", "e"]
    assert statuses(results) == dict.fromkeys("abcde", "completed")
    assert probe.log == [(edge, s) for s in order for edge in ("start", "end")]
    assert probe.peak == 1


# -- Parallel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("behind_a_root", [False, True], ids=["roots", "after-a-root"])
async def test_parallel_starts_every_ready_step_at_once(behind_a_root: bool) -> None:
    """Five steps that only finish when all five run at the same time all complete, whether
    they are ready at the start or become ready together when their dependency completes."""
    probe = Probe()
    roots = [step("root")] if behind_a_root else []
    gathered = [
        step(
            f"s{i}",
            "rendezvous",
            after=[r.step_id for r in roots],
            params={"parties": 5},
            timeout=5_000,
        )
        for i in range(5)
    ]
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(10):
            results = await run(
                o,
                workflow(
                    "fan",
                    *roots,
                    *gathered,
                    step("join", after=[s.step_id for s in gathered]),
                    mode=ExecutionMode.Parallel,
                ),
            )
    assert statuses(results) == dict.fromkeys(
        [*(r.step_id for r in roots), *(s.step_id for s in gathered), "join"], "completed"
    )
    assert probe.peak == 5
    assert probe.log[-2:] == [("start", "join"), ("end", "join")]


async def test_parallel_honours_max_concurrency() -> None:
    """With max_concurrency=2, never more than two of six independent steps overlap."""
    probe = Probe()
    steps = [step(f"s{i}", params={"sleep": 0.01}) for i in range(6)]
    async with AsyncPluginOrchestrator(manager_with(probe), max_concurrency=2) as o:
        results = await run(o, workflow("bounded", *steps, mode=ExecutionMode.Parallel))
    assert statuses(results) == {f"s{i}": "completed" for i in range(6)}
    assert probe.peak == 2


async def test_parallel_sync_steps_are_bounded_by_the_thread_limit() -> None:
    """With thread_limit=2, never more than two sync steps run in worker threads at once."""
    probe = Probe()
    steps = [step(f"s{i}", "emit_sync", params={"sleep": 0.01}) for i in range(5)]
    async with AsyncPluginOrchestrator(manager_with(probe), thread_limit=2) as o:
        results = await run(o, workflow("threads", *steps, mode=ExecutionMode.Parallel))
    assert statuses(results) == {f"s{i}": "completed" for i in range(5)}
    assert probe.peak == 2


# -- Conditional OR-join ----------------------------------------------------------------------


def _branching(mode: ExecutionMode) -> Workflow:
    return workflow(
        f"branch-{mode.value}",
        step("route", params={"returns": {"ready": True}}),
        step("left", after=["route"], condition="side == 'left'", params={"returns": {"l": 1}}),
        step("right", after=["route"], condition="side == 'right'", params={"returns": {"r": 1}}),
        step("join", after=["left", "right"]),
        mode=mode,
    )


async def test_conditional_join_runs_when_one_chosen_branch_completed() -> None:
    """In Conditional mode a join runs after one branch completed and the other was skipped."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(o, _branching(ExecutionMode.Conditional), {"side": "left"})
    assert results["status"] == "completed"
    assert statuses(results) == {
        "route": "completed",
        "left": "completed",
        "right": "skipped",
        "join": "completed",
    }
    assert _reasons(results) == {"right": "condition \"side == 'right'\" is false"}
    assert probe.inputs_of("join") == {"side": "left", "ready": True, "l": 1}


async def test_conditional_join_is_skipped_when_no_branch_completed() -> None:
    """In Conditional mode a join whose dependencies were all skipped is skipped, with a reason."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, _branching(ExecutionMode.Conditional), {"side": "up"})
    assert results["status"] == "completed"
    assert statuses(results) == {
        "route": "completed",
        "left": "skipped",
        "right": "skipped",
        "join": "skipped",
    }
    assert _reasons(results)["join"] == "none of its dependencies completed"


async def test_conditional_join_runs_after_a_completed_and_a_failed_branch() -> None:
    """In Conditional mode a join also runs when one branch completed and the other failed
    (critical=False); the failed branch contributes nothing to its input."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "or-join",
                step("good", params={"returns": {"good": 1}}),
                step("bad", "fail", critical=False),
                step("join", after=["good", "bad"]),
                mode=ExecutionMode.Conditional,
            ),
        )
    assert results["status"] == "completed"
    assert statuses(results) == {"good": "completed", "bad": "failed", "join": "completed"}
    assert probe.inputs_of("join") == {"good": 1}


async def test_parallel_join_needs_every_dependency() -> None:
    """Outside Conditional mode a join with a skipped dependency is skipped, naming it."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, _branching(ExecutionMode.Parallel), {"side": "left"})
    assert statuses(results) == {
        "route": "completed",
        "left": "completed",
        "right": "skipped",
        "join": "skipped",
    }
    assert _reasons(results)["join"] == "dependency 'right' skipped"


# -- conditions in every mode -----------------------------------------------------------------


def _load_if_small(mode: ExecutionMode, condition: Any, rows: int) -> Workflow:
    """count (reports `rows` rows) → load (runs if `condition`) → report."""
    return workflow(
        f"cond-{rows}",
        step("count", params={"returns": {"row_count": rows}}),
        step("load", after=["count"], condition=condition, params={"returns": {"loaded": True}}),
        step("report", after=["load"]),
        mode=mode,
    )


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("condition", CONDITIONS)
async def test_condition_is_honoured_in_every_mode(mode: ExecutionMode, condition: Any) -> None:
    """A string, sync or async condition over upstream output runs or skips its step, and a
    skipped step's dependents are skipped too, in every mode."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        small = await run(o, _load_if_small(mode, condition, 10))
        large = await run(o, _load_if_small(mode, condition, 50_000))
    assert statuses(small) == dict.fromkeys(("count", "load", "report"), "completed")
    assert small["steps"]["load"]["result"] == {"loaded": True}
    assert statuses(large) == {"count": "completed", "load": "skipped", "report": "skipped"}
    assert _reasons(large) == {
        "load": f"condition {condition!r} is false",
        "report": _skip_reason(mode, "load", "skipped"),
    }
    assert large["status"] == "completed"
    assert "loaded" not in large["data"]
    assert [call.step_id for call in probe.calls] == ["count", "load", "report", "count"]


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
async def test_non_critical_failure_skips_dependents_and_the_workflow_completes(
    mode: ExecutionMode,
) -> None:
    """A failed critical=False step is recorded, its dependents (transitively) are skipped with
    a reason, independent steps still run, and the workflow completes."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(
            o,
            workflow(
                "soft",
                step("a", "fail", critical=False),
                step("b", after=["a"]),
                step("c", after=["b"]),
                step("d", params={"returns": {"d": 1}}),
                mode=mode,
            ),
        )
    assert results["status"] == "completed"
    assert results["error"] is None
    assert statuses(results) == {"a": "failed", "b": "skipped", "c": "skipped", "d": "completed"}
    assert results["steps"]["a"]["error_code"] == "ExecutionFailed"
    assert _reasons(results) == {
        "b": _skip_reason(mode, "a", "failed"),
        "c": _skip_reason(mode, "b", "skipped"),
    }
    assert results["data"] == {"d": 1}


async def test_critical_failure_cancels_running_and_pending_steps() -> None:
    """A critical failure fails the workflow, cancels the running step and marks every
    pending step Cancelled."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(10):
            results = await run(
                o,
                workflow(
                    "hard",
                    step("a", "fail_after_start", params={"other": "b"}),
                    step("b", "hang"),
                    step("c", after=["b"]),
                    step("d", after=["a"]),
                    mode=ExecutionMode.Parallel,
                ),
            )
    assert results["status"] == "failed"
    assert results["error_code"] == "ExecutionFailed"
    assert "critical step 'a' failed" in results["error"]
    assert statuses(results) == {
        "a": "failed",
        "b": "cancelled",
        "c": "cancelled",
        "d": "cancelled",
    }
    assert probe.cancelled == ["b"]
    assert [call.step_id for call in probe.calls] == ["a", "b"]


async def test_sequential_critical_failure_cancels_the_remaining_steps() -> None:
    """In Sequential mode a critical failure stops the run; later steps end Cancelled, unrun."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o, workflow("hard-seq", step("a"), step("b", "fail"), step("c"), step("d", after=["c"]))
        )
    assert results["status"] == "failed"
    assert statuses(results) == {
        "a": "completed",
        "b": "failed",
        "c": "cancelled",
        "d": "cancelled",
    }
    assert [call.step_id for call in probe.calls] == ["a", "b"]
