"""Compensation: rollback steps of completed steps after a failure or a cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from plugins_for_tests import manager_with, run, start, statuses, step, workflow

from qtforge import PluginErrorCode
from qtforge.orchestration import (
    AsyncPluginOrchestrator,
    StepContext,
    StepStatus,
    Workflow,
    WorkflowFileError,
    WorkflowStep,
)
from qtforge.orchestration import events as ev
from qtforge.orchestration._compensation import compensation_order
from qtforge.orchestration._records import StepRecord
from qtforge.orchestration._spec import validate_workflow
from qtforge.store import MemoryStore

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0


class Ledger:
    """Steps that do and undo; registered as ``"ledger"``."""

    plugin_id = "ledger"

    def __init__(self) -> None:
        self.undone: list[Any] = []
        self.seen: dict[str, dict[str, Any]] = {}
        self.flaky_calls = 0
        self.started = anyio.Event()

    async def do(self, context: StepContext) -> dict[str, str]:
        return {f"{context.step_id}_id": f"made-{context.step_id}"}

    async def boom(self) -> None:
        raise RuntimeError("boom")

    async def hang(self) -> None:
        self.started.set()
        await anyio.sleep_forever()

    async def undo(self, context: StepContext, result: Any) -> None:
        await anyio.lowlevel.checkpoint()  # a cancel not shielded from would strike here
        self.undone.append(result)
        self.seen[context.step_id] = dict(context.inputs)

    async def undo_fail(self, result: Any) -> None:
        self.undone.append(("failing", result))
        raise RuntimeError("cannot undo")

    async def undo_hang(self, result: Any) -> None:
        self.undone.append(("hanging", result))
        await anyio.sleep_forever()

    async def undo_flaky(self, result: Any) -> None:
        self.flaky_calls += 1
        if self.flaky_calls == 1:
            raise RuntimeError("flaky")
        self.undone.append(("flaky", result))


def doing(step_id: str, after: list[str] | None = None, **fields: Any) -> WorkflowStep:
    return step(step_id, "do", plugin="ledger", after=after or [], **fields)


def undoing(step_id: str, method: str = "undo", **fields: Any) -> WorkflowStep:
    return step(f"undo-{step_id}", method, plugin="ledger", **fields)


def chain_with(method_of: dict[str, str], last: str = "boom", **last_fields: Any) -> Workflow:
    """a -> b -> c -> `last`, each of a, b, c compensated by `method_of` (default undo)."""
    built = workflow(
        "saga",
        doing("a"),
        doing("b", ["a"]),
        doing("c", ["b"]),
        step("last", last, plugin="ledger", after=["c"], **last_fields),
    )
    for step_id in ("a", "b", "c"):
        built.add_rollback_step(step_id, undoing(step_id, method_of.get(step_id, "undo")))
    return built


def completed(attempts: int) -> dict[str, Any]:
    return {"status": "completed", "attempts": attempts, "error": None, "error_code": None}


def made(step_id: str) -> dict[str, str]:
    return {f"{step_id}_id": f"made-{step_id}"}


async def test_a_critical_failure_compensates_completed_steps_in_reverse_order() -> None:
    """A critical failure runs the rollbacks of the completed steps, latest first, and
    status, results and events report each one 'completed'."""
    ledger = Ledger()
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        o.register_workflow(chain_with({})).value()
        stream = o.events()
        execution_id = (await o.execute_workflow("saga")).value()
        results = (await o.get_workflow_results(execution_id)).value()
        status = (await o.get_workflow_status(execution_id)).value()
        seen: list[ev.Event] = []
        with anyio.move_on_after(0.2):
            async for event in stream:
                seen.append(event)
                if event.kind == "workflow.failed":
                    break
        await stream.aclose()
    assert results["status"] == "failed"
    assert ledger.undone == [made("c"), made("b"), made("a")]
    assert status["compensations"] == {"c": "completed", "b": "completed", "a": "completed"}
    assert results["compensations"]["a"] == completed(1)
    kinds = [(event.kind, event.step_id) for event in seen if event.kind.startswith("comp")]
    assert kinds == [
        ("compensation.started", "c"),
        ("compensation.completed", "c"),
        ("compensation.started", "b"),
        ("compensation.completed", "b"),
        ("compensation.started", "a"),
        ("compensation.completed", "a"),
    ]
    assert seen[-1].kind == "workflow.failed"
    assert isinstance(seen[-2], ev.CompensationCompleted)


async def test_a_failing_compensation_is_reported_and_the_others_still_run() -> None:
    """A rollback that raises ends 'failed' with its error; the earlier steps' rollbacks
    still run."""
    ledger = Ledger()
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        results = await run(o, chain_with({"b": "undo_fail"}))
    assert ledger.undone == [made("c"), ("failing", made("b")), made("a")]
    entry = results["compensations"]["b"]
    assert (entry["status"], entry["error_code"]) == ("failed", "ExecutionFailed")
    assert "cannot undo" in entry["error"]
    assert results["compensations"]["a"]["status"] == "completed"


async def test_a_compensation_over_its_timeout_fails_with_timeout() -> None:
    """A rollback running past its own timeout is cancelled and 'failed' with Timeout; the
    next rollback still runs."""
    ledger = Ledger()
    built = chain_with({})
    built.add_rollback_step("b", undoing("b", "undo_hang", timeout=30))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        with anyio.fail_after(PROMPTLY):
            results = await run(o, built)
    entry = results["compensations"]["b"]
    assert (entry["status"], entry["error_code"]) == ("failed", "Timeout")
    assert ledger.undone == [made("c"), ("hanging", made("b")), made("a")]


async def test_a_compensation_is_retried_by_its_own_policy() -> None:
    """A rollback with max_retries gets another attempt after a failure."""
    ledger = Ledger()
    built = chain_with({})
    built.add_rollback_step("c", undoing("c", "undo_flaky", max_retries=1, retry_delay=0))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        results = await run(o, built)
    assert results["compensations"]["c"] == completed(2)
    assert ledger.undone[0] == ("flaky", made("c"))


async def test_cancelling_an_execution_compensates_the_completed_steps() -> None:
    """cancel_workflow runs the rollbacks of the steps that completed (shielded from the
    cancel); the running step is cancelled and not compensated."""
    ledger = Ledger()
    built = workflow("cancelled", doing("a"), step("h", "hang", plugin="ledger", after=["a"]))
    built.add_rollback_step("a", undoing("a")).add_rollback_step("h", undoing("h"))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        execution_id = await start(o, built)
        with anyio.fail_after(PROMPTLY):
            await ledger.started.wait()
        (await o.cancel_workflow(execution_id)).value()
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
    assert results["status"] == "cancelled"
    assert statuses(results) == {"a": "completed", "h": "cancelled"}
    assert results["compensations"] == {"a": completed(1)}
    assert ledger.undone == [made("a")]


async def test_a_workflow_timeout_compensates_the_completed_steps() -> None:
    """An execution over the workflow timeout fails and compensates what completed."""
    ledger = Ledger()
    built = workflow(
        "late", doing("a"), step("h", "hang", plugin="ledger", after=["a"]), timeout=50
    )
    built.add_rollback_step("a", undoing("a"))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        with anyio.fail_after(PROMPTLY):
            results = await run(o, built)
    assert (results["status"], results["error_code"]) == ("failed", "Timeout")
    assert results["compensations"]["a"]["status"] == "completed"


async def test_completed_workflows_and_non_critical_failures_compensate_nothing() -> None:
    """A workflow that completes, even past a non-critical failure, runs no rollback."""
    ledger = Ledger()
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        soft = await run(o, chain_with({}, critical=False))
        done = await run(o, workflow("ok", doing("a")).add_rollback_step("a", undoing("a")))
    assert (soft["status"], soft["compensations"]) == ("completed", {})
    assert statuses(soft)["last"] == "failed"
    assert (done["status"], done["compensations"]) == ("completed", {})
    assert ledger.undone == []


async def test_a_compensation_sees_the_steps_inputs_its_result_and_its_parameters() -> None:
    """The rollback's input mapping is the step's inputs, plus its result (as 'result' and
    as passed on), with the rollback's own parameters winning."""
    ledger = Ledger()
    built = workflow("inputs", doing("a"), doing("b", ["a"]), step("x", "boom", plugin="ledger"))
    built.add_rollback_step("b", undoing("b", params={"reason": "rollback", "seed": 2}))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        await run(o, built, {"seed": 1, "order": 7})
    seen = ledger.seen["undo-b"]
    assert seen["order"] == 7
    assert seen["seed"] == 2
    assert seen["reason"] == "rollback"
    assert seen["a_id"] == "made-a"
    assert seen["b_id"] == "made-b"
    assert seen["result"] == made("b")


async def test_a_rollback_for_an_unknown_step_or_with_dependencies_is_refused() -> None:
    """register_workflow answers InvalidConfiguration for a rollback of an unknown step
    and for a rollback step with dependencies."""
    async with AsyncPluginOrchestrator(manager_with(Ledger())) as o:
        unknown = o.register_workflow(
            workflow("u", doing("a")).add_rollback_step("zz", undoing("zz"))
        )
        with_deps = o.register_workflow(
            workflow("d", doing("a")).add_rollback_step("a", undoing("a", after=["a"]))
        )
    assert unknown.error().code is PluginErrorCode.InvalidConfiguration
    assert "'zz'" in unknown.error().message
    assert with_deps.error().code is PluginErrorCode.InvalidConfiguration


def test_rollback_steps_are_part_of_the_workflow_and_removed_with_their_step() -> None:
    """add_rollback_step is seen by rollback_steps and equality, and remove_step drops it."""
    built = workflow("w", doing("a"), doing("b"))
    plain = workflow("w", doing("a"), doing("b"))
    built.add_rollback_step("a", undoing("a"))
    assert built.rollback_steps == {"a": undoing("a")}
    assert built != plain
    built.remove_step("a")
    assert built.rollback_steps == {}
    with pytest.raises(TypeError, match="rollback_step"):
        built.add_rollback_step("b", "undo")  # type: ignore[arg-type]


async def test_closing_the_orchestrator_still_runs_compensations_shielded() -> None:
    """An execution cancelled by the orchestrator closing still runs its rollbacks to the
    end, shielded from that cancellation."""
    ledger = Ledger()
    built = workflow("closing", doing("a"), step("h", "hang", plugin="ledger", after=["a"]))
    built.add_rollback_step("a", undoing("a"))
    async with AsyncPluginOrchestrator(manager_with(ledger)) as o:
        execution_id = await start(o, built)
        with anyio.fail_after(PROMPTLY):
            await ledger.started.wait()
    status = o.status_now(execution_id).value()
    assert status["status"] == "cancelled"
    assert status["compensations"] == {"a": "completed"}
    assert ledger.undone == [made("a")]


def test_rollback_steps_round_trip_through_the_file_format(tmp_path: Path) -> None:
    """to_dict / from_dict and a YAML file keep the rollback steps, under
    'rollback_steps'."""
    built = chain_with({"b": "undo_fail"})
    built.add_rollback_step("a", undoing("a", timeout=250, max_retries=2))
    data = built.to_dict()
    path = tmp_path / "saga.yaml"
    built.to_file(path)
    assert data["rollback_steps"]["a"] == {
        "id": "undo-a",
        "plugin": "ledger",
        "method": "undo",
        "timeout": 250,
        "max_retries": 2,
    }
    assert Workflow.from_dict(data) == built
    assert Workflow.from_file(path) == built
    assert "rollback_steps" not in workflow("plain", doing("a")).to_dict()


def test_a_file_with_a_rollback_for_an_unknown_step_is_refused() -> None:
    """from_dict reports a rollback of an unknown step and one with dependencies, naming
    their fields."""
    data = workflow("w", doing("a")).to_dict()
    data["rollback_steps"] = {
        "zz": {"id": "u", "plugin": "ledger", "method": "undo"},
        "a": {"id": "v", "plugin": "ledger", "method": "undo", "dependencies": ["a"]},
    }
    with pytest.raises(WorkflowFileError) as raised:
        Workflow.from_dict(data)
    fields = {problem.field for problem in raised.value.problems}
    assert fields == {"rollback_steps.zz", "rollback_steps.a.dependencies"}


async def test_rollback_steps_work_with_a_store() -> None:
    """With a store (which keeps the workflow as its file form) a failed execution still
    runs its rollback steps."""
    ledger = Ledger()
    async with AsyncPluginOrchestrator(manager_with(ledger), store=MemoryStore()) as o:
        results = await run(o, chain_with({}))
    assert results["compensations"] == {"c": completed(1), "b": completed(1), "a": completed(1)}


def test_compensation_order_is_latest_completion_first_with_ties_and_restored_last() -> None:
    """compensation_order sorts completed steps with rollbacks by completion time, latest
    first; ties go in reverse topological order, restored steps (no time) last, and
    steps that did not complete are left out."""
    built = workflow("o", doing("a"), doing("b", ["a"]), doing("c"), doing("d"), doing("e"))
    for step_id in "abcde":
        built.add_rollback_step(step_id, undoing(step_id))
    spec = validate_workflow(built).value()
    records = [StepRecord() for _ in spec.steps]
    finished = {"a": 1.0, "b": 1.0, "c": 3.0, "d": None}
    for step_id, at in finished.items():
        record = records[spec.index[step_id]]
        record.status = StepStatus.Completed
        record.finished_at = at
    records[spec.index["e"]].status = StepStatus.Failed
    order = [spec.steps[i].step_id for i in compensation_order(spec, records)]
    assert order == ["c", "b", "a", "d"]
