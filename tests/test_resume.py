"""Resuming stored executions, and crash tests: SIGKILL a child at named points."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from _crash import STEPS, child, query, uninterrupted_data

from qtforge import PluginManager
from qtforge.orchestration import PluginOrchestrator, StepContext

# Each point: (crash env, steps the store had completed at the kill, step run twice).
# Transactions are numbered from 1: the execution's creation, s0's attempt start, then
# per step its completion together with the next step's attempt start (a chain).
POINTS = {
    "between_steps": ({"QTFORGE_CRASH_AT": "step_completed:2"}, 2, None),
    "during_step": ({"QTFORGE_CRASH_AT": "attempt_started:3"}, 2, None),
    "during_commit": ({"QTFORGE_CRASH_AT": "in_commit:5"}, 2, "s2"),
    "after_side_effect": ({"KILL_IN_STEP": "s4"}, 4, "s4"),
}


@pytest.mark.parametrize(
    ("point", "backends"),
    [
        ("between_steps", ("asyncio", "trio")),
        ("during_step", ("trio", "asyncio")),
        ("during_commit", ("asyncio", "asyncio")),
        ("after_side_effect", ("trio", "trio")),
    ],
)
def test_killed_execution_resumes_without_rerunning_completed_steps(
    tmp_path: Path, point: str, backends: tuple[str, str]
) -> None:
    """After a SIGKILL at `point`, resume finishes the run: completed steps never re-run,
    every step completes exactly once in the record, and the data is an unbroken run's."""
    env, completed_at_kill, rerun = POINTS[point]
    db, log = tmp_path / "runs.db", tmp_path / "side_effects.log"
    killed = child(db, log, backends[0], "start", **env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    (eid, status), = query(db, "SELECT execution_id, status FROM executions")  # fmt: skip
    assert status == "running"
    done_before = {
        step for (step,) in query(db, "SELECT step_id FROM step_runs WHERE status = 'completed'")
    }
    assert len(done_before) == completed_at_kill

    with PluginOrchestrator(PluginManager(), store=db) as reader:  # another process's view
        assert reader.list_executions(status="running") == [eid]
        assert reader.get_workflow_status(eid).value()["completed_steps"] == completed_at_kill

    resumed = child(db, log, backends[1], eid)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == uninterrupted_data()
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "SELECT status, resumes FROM executions") == [("completed", 1)]

    runs = [line.split() for line in log.read_text().splitlines()]
    ran = [step for step, _ in runs]
    assert {key for _, key in runs} == {f"{eid}/s{i}" for i in range(STEPS)}
    for step in done_before:
        assert ran.count(step) == 1, f"completed step {step} ran again"
    expected_twice = {rerun} if rerun else set()
    assert {step for step in ran if ran.count(step) > 1} == expected_twice
    completions = query(
        db, "SELECT step_id, count(*) FROM events WHERE type = 'StepCompleted' GROUP BY step_id"
    )
    assert sorted(completions) == [(f"s{i}", 1) for i in range(STEPS)]
    # The interrupted attempt is on record, and its step's next attempt followed it.
    # Between two steps of a chain that is the next step's: its start was committed with
    # its dependency's completion, and the kill came before it ran.
    abandoned = query(db, "SELECT step_id FROM step_attempts WHERE status = 'abandoned'")
    (step,), = abandoned  # fmt: skip
    assert query(
        db, f"SELECT attempt, status FROM step_attempts WHERE step_id = '{step}' ORDER BY 1"
    ) == [(1, "abandoned"), (2, "succeeded")]


def test_resume_in_process_feeds_stored_results_to_dependents(tmp_path: Path) -> None:
    """An interrupted run resumed by the sync facade passes stored results downstream and
    runs only the steps that had not completed."""
    db, log = tmp_path / "runs.db", tmp_path / "side_effects.log"
    killed = child(db, log, "asyncio", "start", QTFORGE_CRASH_AT="step_completed:3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (eid,), = query(db, "SELECT execution_id FROM executions")  # fmt: skip
    calls: list[tuple[str, int]] = []

    class Steps:
        plugin_id = "steps"

        def inc(self, value: int, context: StepContext) -> dict[str, int]:
            calls.append((context.step_id, value))
            return {"value": value + 1, context.step_id: value}

    manager = PluginManager()
    manager.register_plugin(Steps()).value()
    with PluginOrchestrator(manager, store=db) as orchestrator:
        assert orchestrator.resume_workflow(eid).value() == eid
        results = orchestrator.get_workflow_results(eid).value()
        again = orchestrator.resume_workflow(eid)
    assert calls == [("s3", 3), ("s4", 4), ("s5", 5)]
    assert results["data"] == uninterrupted_data()
    assert results["steps"]["s0"]["status"] == "completed"
    assert results["steps"]["s0"]["attempts"] == 1
    assert results["steps"]["s3"]["attempts"] == 1
    assert not again
    assert "already finished" in again.error().message
