"""Which process holds a stored execution (leases), cancelling from another process,
and what the store keeps of pauses and compensations, a crash while compensating too."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from plugins_for_tests import manager_with, start, statuses, step, workflow

from qtforge import PluginErrorCode
from qtforge.orchestration import AsyncPluginOrchestrator, PluginOrchestrator, StepContext, Workflow
from qtforge.orchestration import events as ev
from qtforge.orchestration._store import Journal
from qtforge.store import SQLiteStore

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0  # seconds: far above any real scheduling delay


class Saga:
    """Steps that do, hang or undo; registered as ``"saga"``."""

    plugin_id = "saga"

    def __init__(self) -> None:
        self.undone: list[str] = []
        self.hanging = anyio.Event()
        self.ran: list[str] = []

    async def do(self, context: StepContext) -> dict[str, str]:
        self.ran.append(context.step_id)
        return {context.step_id: "done"}

    async def hang(self) -> None:
        self.hanging.set()
        await anyio.sleep_forever()

    async def boom(self) -> None:
        raise RuntimeError("boom")

    async def undo(self, context: StepContext) -> None:
        self.undone.append(context.step_id)


def saga(last: str = "hang") -> Workflow:
    """a -> b -> c(`last`), with a rollback for a and b."""
    built = workflow(
        "saga",
        step("a", "do", plugin="saga"),
        step("b", "do", plugin="saga", after=["a"]),
        step("c", last, plugin="saga", after=["b"]),
    )
    built.add_rollback_step("a", step("undo-a", "undo", plugin="saga"))
    built.add_rollback_step("b", step("undo-b", "undo", plugin="saga"))
    return built


def engine(path: Path, plugin: Saga, lease: float = 30.0) -> AsyncPluginOrchestrator:
    return AsyncPluginOrchestrator(manager_with(plugin), store=SQLiteStore(path, lease=lease))


def query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path, isolation_level=None)  # autocommit
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


async def interrupted(
    path: Path, built: Workflow, done: list[str], owner: str, lease: float
) -> str:
    """An execution of `built` recorded as a process would leave it that died after the
    steps in `done` completed, held by `owner` until `lease` (seconds since the epoch)."""
    store = SQLiteStore(path)
    await store.open()
    step_ids = [s.step_id for s in built.steps]
    try:
        await store.create_execution(
            {
                "execution_id": "cut",
                "workflow_id": built.workflow_id,
                "snapshot": json.dumps(built.to_dict()),
                "initial_data": b"{}",
                "created_at": time.time(),
                "step_ids": step_ids,
                "owner": owner,
                "lease_until": lease,
            }
        )
        journal = Journal(store, "cut", step_ids)
        for step_id in done:
            index = step_ids.index(step_id)
            await journal.attempt_started(index, 1)
            await journal.step_completed(index, 1, json.dumps({step_id: "done"}).encode())
    finally:
        await store.aclose()
    return "cut"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


async def test_an_execution_held_by_a_live_process_is_not_resumed_elsewhere(
    tmp_path: Path,
) -> None:
    """While its holder's lease is live, an execution cannot be resumed by another
    orchestrator; once the lease has run out it can, and completes."""
    db = tmp_path / "runs.db"
    far = time.time() + 3600
    eid = await interrupted(db, saga("do"), ["a"], "elsewhere/1/x", far)
    plugin = Saga()
    async with engine(db, plugin) as other:
        other.register_workflow(saga("do")).value()
        refused = await other.resume_workflow(eid)
        query(db, "UPDATE executions SET lease_until = ?", time.time() - 1)
        resumed = await other.resume_workflow(eid)
        results = (await other.get_workflow_results(eid)).value()
    assert refused.error().code is PluginErrorCode.InvalidState
    assert "another process" in refused.error().message
    assert resumed.value() == eid
    assert results["status"] == "completed"
    assert plugin.ran == ["b", "c"]
    assert query(db, "SELECT owner, lease_until FROM executions")[0][1] is None


async def test_a_dead_process_on_this_machine_holds_no_lease(tmp_path: Path) -> None:
    """An execution whose holder was a process on this host that no longer exists is
    resumed at once, however long its lease had to run."""
    db = tmp_path / "runs.db"
    owner = f"{socket.gethostname()}/{dead_pid()}/x"
    eid = await interrupted(db, saga("do"), ["a", "b"], owner, time.time() + 3600)
    plugin = Saga()
    async with engine(db, plugin) as other:
        other.register_workflow(saga("do")).value()
        resumed = await other.resume_workflow(eid)
    assert resumed.value() == eid
    assert plugin.ran == ["c"]


async def test_leases_are_renewed_while_an_execution_runs(tmp_path: Path) -> None:
    """The holder renews its lease while the execution runs, well before it runs out."""
    db = tmp_path / "runs.db"
    plugin = Saga()
    async with engine(db, plugin, lease=0.3) as o:
        eid = await start(o, saga())
        with anyio.fail_after(PROMPTLY):
            await plugin.hanging.wait()
        ((first, held),) = query(db, "SELECT lease_until, owner FROM executions")
        with anyio.fail_after(PROMPTLY):  # renewed every 0.1 s
            while (renewed := query(db, "SELECT lease_until FROM executions")[0][0]) <= first:  # noqa: ASYNC110  # another connection's view: polled
                await anyio.sleep(0.05)
        await o.cancel_workflow(eid)
    assert renewed > first
    assert held.startswith(f"{socket.gethostname()}/")


async def test_cancelling_from_another_orchestrator_cancels_where_it_runs(
    tmp_path: Path,
) -> None:
    """cancel_workflow on an orchestrator that only shares the store records a request;
    the process running the execution cancels it within its heartbeat, compensations
    running there; a second request is refused as already cancelling."""
    db = tmp_path / "runs.db"
    plugin = Saga()
    async with engine(db, plugin, lease=0.3) as runner, engine(db, Saga()) as other:
        eid = await start(runner, saga())
        with anyio.fail_after(PROMPTLY):
            await plugin.hanging.wait()
        asked = await other.cancel_workflow(eid)
        again = await other.cancel_workflow(eid)
        with anyio.fail_after(PROMPTLY):
            results = (await runner.wait_workflow(eid)).value()
        stored = (await other.get_workflow_results(eid)).value()
        finished = await other.cancel_workflow(eid)
    assert asked.has_value()
    assert again.error().code is PluginErrorCode.InvalidState
    assert results["status"] == "cancelled"
    assert statuses(results) == {"a": "completed", "b": "completed", "c": "cancelled"}
    assert plugin.undone == ["undo-b", "undo-a"]
    assert stored["status"] == "cancelled"
    assert finished.error().code is PluginErrorCode.InvalidState


async def test_cancelling_an_interrupted_execution_ends_it_here_with_compensations(
    tmp_path: Path,
) -> None:
    """An execution whose process died is cancelled by the orchestrator asked to: its
    pending steps end cancelled, its completed ones are compensated there."""
    db = tmp_path / "runs.db"
    eid = await interrupted(db, saga(), ["a", "b"], "elsewhere/1/x", time.time() - 1)
    plugin = Saga()
    async with engine(db, plugin) as other:
        asked = await other.cancel_workflow(eid)
        with anyio.fail_after(PROMPTLY):
            results = (await other.wait_workflow(eid)).value()
    assert asked.has_value()
    assert results["status"] == "cancelled"
    assert statuses(results) == {"a": "completed", "b": "completed", "c": "cancelled"}
    assert plugin.undone == ["undo-b", "undo-a"]
    assert plugin.ran == []
    assert query(db, "SELECT status FROM executions") == [("cancelled",)]


async def test_cancelling_an_interrupted_execution_needs_no_plugins_without_rollbacks(
    tmp_path: Path,
) -> None:
    """Without rollback steps, an interrupted execution is cancelled by an orchestrator
    that does not have its plugins."""
    db = tmp_path / "runs.db"
    built = workflow("plain", step("a", "do", plugin="saga"), step("b", "do", plugin="saga"))
    eid = await interrupted(db, built, ["a"], "elsewhere/1/x", time.time() - 1)
    async with AsyncPluginOrchestrator(manager_with(), store=db) as bare:
        asked = await bare.cancel_workflow(eid)
        with anyio.fail_after(PROMPTLY):
            results = (await bare.wait_workflow(eid)).value()
    assert asked.has_value()
    assert statuses(results) == {"a": "completed", "b": "cancelled"}


async def test_cancelling_unknown_or_unstored_executions_is_refused(tmp_path: Path) -> None:
    """An id the store does not know gives NotFound; without a store, NotFound too."""
    async with engine(tmp_path / "runs.db", Saga()) as o:
        unknown = await o.cancel_workflow("nope")
    async with AsyncPluginOrchestrator(manager_with()) as bare:
        unstored = await bare.cancel_workflow("nope")
    assert unknown.error().code is PluginErrorCode.NotFound
    assert unstored.error().code is PluginErrorCode.NotFound


async def test_a_pause_is_kept_in_the_store_and_announced(tmp_path: Path) -> None:
    """A paused execution reads 'paused' in the store (to other orchestrators too) and
    emits workflow.paused; resuming records it running again and emits workflow.resumed."""
    db = tmp_path / "runs.db"

    class Gate(Saga):
        def __init__(self) -> None:
            super().__init__()
            self.gate = anyio.Event()
            self.waiting = anyio.Event()

        async def wait(self) -> None:
            self.waiting.set()
            await self.gate.wait()

    plugin = Gate()
    built = workflow("gated", step("a", "wait", plugin="saga"), step("b", "do", plugin="saga"))
    async with engine(db, plugin) as o, engine(db, Saga()) as other:
        stream = o.events()
        eid = await start(o, built)
        with anyio.fail_after(PROMPTLY):
            await plugin.waiting.wait()
        (await o.pause_workflow(eid)).value()
        plugin.gate.set()
        with anyio.fail_after(PROMPTLY):
            while (await other.get_workflow_status(eid)).value()["status"] != "paused":  # noqa: ASYNC110  # another orchestrator's view: polled
                await anyio.sleep(0.01)
        (await o.resume_workflow(eid)).value()
        kinds = []
        with anyio.fail_after(PROMPTLY):
            async for event in stream:
                kinds.append(event.kind)
                if isinstance(event, ev.WorkflowCompleted):
                    break
    workflow_kinds = [kind for kind in kinds if kind.startswith("workflow.")]
    assert workflow_kinds == [
        "workflow.started",
        "workflow.paused",
        "workflow.resumed",
        "workflow.completed",
    ]
    logged = [kind for (kind,) in query(db, "SELECT type FROM events WHERE step_id IS NULL")]
    assert logged == [
        "ExecutionStarted",
        "ExecutionPaused",
        "ExecutionRunning",
        "ExecutionCompleted",
    ]


async def test_compensation_outcomes_are_stored_and_read_back(tmp_path: Path) -> None:
    """What the rollback steps did is in the store: another orchestrator reads the same
    compensations in status and results as the one that ran them."""
    db = tmp_path / "runs.db"
    plugin = Saga()
    async with engine(db, plugin) as o:
        eid = await start(o, saga("boom"))
        live = (await o.wait_workflow(eid)).value()
    async with engine(db, Saga()) as reader:
        stored = (await reader.get_workflow_results(eid)).value()
        status = (await reader.get_workflow_status(eid)).value()
    assert live["status"] == "failed"
    assert stored["compensations"] == live["compensations"]
    assert status["compensations"] == {"b": "completed", "a": "completed"}
    times = query(db, "SELECT started_at <= finished_at FROM compensations")
    assert times == [(1,), (1,)]


SAGA_CHILD = r"""
import os, signal, sys
from qtforge import PluginManager
from qtforge.orchestration import PluginOrchestrator, StepContext, Workflow, WorkflowStep

db, log, command = sys.argv[1:4]

class Saga:
    plugin_id = "saga"

    def _log(self, line):
        with open(log, "a") as file:
            file.write(line + "\n")

    async def do(self, context: StepContext) -> dict:
        self._log(f"do {context.step_id}")
        return {context.step_id: "done"}

    async def boom(self) -> None:
        raise RuntimeError("boom")

    async def undo(self, context: StepContext) -> None:
        self._log(f"undo {context.step_id}")
        if os.environ.get("KILL_IN") == context.step_id:
            os.kill(os.getpid(), signal.SIGKILL)

manager = PluginManager()
manager.register_plugin(Saga()).value()
workflow = Workflow("saga")
for step_id, method, deps in (("a", "do", []), ("b", "do", ["a"]), ("c", "boom", ["b"])):
    workflow.add_step(WorkflowStep(step_id, "saga", method, dependencies=deps))
for step_id in ("a", "b"):
    workflow.add_rollback_step(step_id, WorkflowStep(f"undo-{step_id}", "saga", "undo"))
with PluginOrchestrator(manager, store=db) as orchestrator:
    if command == "start":
        orchestrator.register_workflow(workflow).value()
        orchestrator.execute_workflow("saga").value()
    else:
        orchestrator.resume_workflow(command).value()
"""


def test_a_crash_while_compensating_is_resumed_by_compensating_the_rest(
    tmp_path: Path,
) -> None:
    """A process killed during a rollback step leaves the execution failed but unfinished;
    resuming it runs the interrupted rollback again and the remaining ones, and none of
    the workflow's steps, nor a rollback that had ended."""
    db, log = tmp_path / "runs.db", tmp_path / "calls.log"

    def child(command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", SAGA_CHILD, str(db), str(log), command],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    killed = child("start", KILL_IN="undo-a")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    (eid, status, finished), = query(db, "SELECT execution_id, status, finished_at FROM executions")
    assert (status, finished) == ("failed", None)
    resumed = child(eid)
    assert resumed.returncode == 0, resumed.stderr
    calls = log.read_text().splitlines()
    assert calls == ["do a", "do b", "undo undo-b", "undo undo-a", "undo undo-a"]
    assert query(db, "SELECT status, error_code, finished_at IS NOT NULL FROM executions") == [
        ("failed", "ExecutionFailed", 1)
    ]
    assert query(db, "SELECT step_id, status, attempts FROM compensations ORDER BY 1") == [
        ("a", "completed", 1),
        ("b", "completed", 1),
    ]
    assert query(db, "SELECT step_id, status FROM step_runs ORDER BY 1") == [
        ("a", "completed"),
        ("b", "completed"),
        ("c", "failed"),
    ]


def test_the_blocking_facade_cancels_an_interrupted_stored_execution(tmp_path: Path) -> None:
    """A fresh `PluginOrchestrator` on the store cancels an interrupted execution as its
    first call, and the store records it cancelled once the facade has closed."""
    db = tmp_path / "runs.db"
    built = workflow("plain", step("a", "do", plugin="saga"), step("b", "do", plugin="saga"))
    eid = anyio.run(interrupted, db, built, ["a"], "elsewhere/1/x", time.time() - 1)
    with PluginOrchestrator(manager_with(), store=db) as facade:
        asked = facade.cancel_workflow(eid)
    assert asked.has_value()
    assert query(db, "SELECT status FROM executions") == [("cancelled",)]
    assert query(db, "SELECT step_id, status FROM step_runs ORDER BY 1") == [
        ("a", "completed"),
        ("b", "cancelled"),
    ]
