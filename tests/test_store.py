"""The execution store: what it records, how it fails, and its file format."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from qtforge import PluginErrorCode, PluginManager
from qtforge.orchestration import AsyncPluginOrchestrator, StepContext, Workflow, WorkflowStep
from qtforge.orchestration._store_schema import SCHEMA_VERSION, migrate
from qtforge.store import (
    JSONSerializer,
    MemoryStore,
    SQLiteStore,
    StoreError,
)


class Steps:
    """Steps with controllable outcomes; registered as ``"steps"``."""

    plugin_id = "steps"

    def __init__(self) -> None:
        self.failures_left = 0
        self.keys: list[str] = []
        self.started = anyio.Event()

    async def inc(self, value: int, context: StepContext) -> dict[str, int]:
        self.keys.append(context.idempotency_key)
        return {"value": value + 1}

    async def flaky(self, value: int) -> dict[str, int]:
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("transient")
        return {"value": value * 10}

    async def opaque(self) -> object:
        return object()

    async def forever(self) -> None:
        self.started.set()
        await anyio.sleep_forever()


def chain(workflow_id: str, *methods: str) -> Workflow:
    """A chain of steps s0, s1, ... calling the given `Steps` methods."""
    workflow = Workflow(workflow_id)
    for i, method in enumerate(methods):
        deps = [f"s{i - 1}"] if i else []
        workflow.add_step(WorkflowStep(f"s{i}", "steps", method, dependencies=deps))
    return workflow


def engine(store: Any, plugin: Steps | None = None) -> AsyncPluginOrchestrator:
    manager = PluginManager()
    manager.register_plugin(plugin or Steps()).value()
    return AsyncPluginOrchestrator(manager, store=store)


def rows(path: Path, query: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


@pytest.mark.anyio
async def test_execution_steps_attempts_and_events_are_recorded(tmp_path: Path) -> None:
    """A run stores its snapshot, initial data, step results, attempts and event log."""
    db = tmp_path / "runs.db"
    plugin = Steps()
    async with engine(str(db), plugin) as orchestrator:
        orchestrator.register_workflow(chain("wf", "inc", "inc")).value()
        eid = (await orchestrator.execute_workflow("wf", {"value": 1})).value()
    (status, snapshot, initial, data), = rows(
        db, "SELECT status, snapshot, initial_data, data FROM executions"
    )  # fmt: skip
    assert status == "completed"
    assert json.loads(snapshot)["id"] == "wf"
    assert json.loads(initial) == {"value": 1}
    assert json.loads(data) == {"value": 3}
    steps = rows(db, "SELECT step_id, status, attempts, result FROM step_runs ORDER BY step_id")
    assert [(s, st, a, json.loads(r)) for s, st, a, r in steps] == [
        ("s0", "completed", 1, {"value": 2}),
        ("s1", "completed", 1, {"value": 3}),
    ]
    attempts = rows(db, "SELECT step_id, attempt, idempotency_key, status FROM step_attempts")
    assert sorted(attempts) == [
        ("s0", 1, f"{eid}/s0", "succeeded"),
        ("s1", 1, f"{eid}/s1", "succeeded"),
    ]
    assert plugin.keys == [f"{eid}/s0", f"{eid}/s1"]
    events = [kind for (kind,) in rows(db, "SELECT type FROM events ORDER BY seq")]
    assert events == [
        "ExecutionStarted",
        "AttemptStarted",
        "StepCompleted",
        "AttemptStarted",
        "StepCompleted",
        "ExecutionCompleted",
    ]


@pytest.mark.anyio
async def test_database_file_is_owner_only_wal_and_versioned(tmp_path: Path) -> None:
    """The store file is created 0600, in WAL mode, with the current schema version."""
    db = tmp_path / "runs.db"
    async with engine(db) as orchestrator:
        orchestrator.register_workflow(chain("wf", "inc")).value()
        await orchestrator.execute_workflow("wf", {"value": 0})
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


@pytest.mark.anyio
async def test_synchronous_option_is_applied_and_checked(tmp_path: Path) -> None:
    """``synchronous="FULL"`` reaches SQLite; anything but NORMAL/FULL is refused."""
    store = SQLiteStore(tmp_path / "runs.db", synchronous="FULL")
    await store.open()
    try:
        assert await store._run(lambda con: con.execute("PRAGMA synchronous").fetchone()) == (2,)
    finally:
        await store.aclose()
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="OFF")


@pytest.mark.anyio
async def test_failed_attempts_and_retries_are_recorded(tmp_path: Path) -> None:
    """Each attempt of a retried step has its own row with its outcome and error."""
    db = tmp_path / "runs.db"
    plugin = Steps()
    plugin.failures_left = 1
    workflow = Workflow("wf").add_step(
        WorkflowStep("s0", "steps", "flaky", max_retries=2, retry_delay=0)
    )
    async with engine(db, plugin) as orchestrator:
        orchestrator.register_workflow(workflow).value()
        eid = (await orchestrator.execute_workflow("wf", {"value": 2})).value()
        results = (await orchestrator.get_workflow_results(eid)).value()
    assert results["steps"]["s0"]["attempts"] == 2
    attempts = rows(db, "SELECT attempt, status, error FROM step_attempts ORDER BY attempt")
    assert attempts[0][:2] == (1, "failed")
    assert "transient" in attempts[0][2]
    assert attempts[1] == (2, "succeeded", None)


@pytest.mark.anyio
async def test_unserialisable_result_fails_the_step_cleanly(tmp_path: Path) -> None:
    """A result JSON cannot hold fails its step with a clear error; the store stays sound."""
    db = tmp_path / "runs.db"
    async with engine(db) as orchestrator:
        orchestrator.register_workflow(chain("wf", "opaque", "inc")).value()
        eid = (await orchestrator.execute_workflow("wf", {"value": 0})).value()
        results = (await orchestrator.get_workflow_results(eid)).value()
    assert results["status"] == "failed"
    assert results["steps"]["s0"]["error_code"] == "InvalidArgument"
    assert "cannot be stored by JSONSerializer" in results["steps"]["s0"]["error"]
    assert results["steps"]["s0"]["attempts"] == 1
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "SELECT step_id, status FROM step_runs ORDER BY step_id") == [
        ("s0", "failed"),
        ("s1", "cancelled"),
    ]
    assert rows(db, "SELECT status FROM executions") == [("failed",)]


@pytest.mark.anyio
async def test_unstorable_workflow_or_initial_data_is_refused_at_execute(tmp_path: Path) -> None:
    """A workflow holding code, or initial data JSON cannot hold, is refused up front."""
    workflow = chain("coded", "inc")
    workflow.steps[0].condition = lambda inputs: True
    async with engine(tmp_path / "runs.db") as orchestrator:
        orchestrator.register_workflow(workflow).value()
        orchestrator.register_workflow(chain("plain", "inc")).value()
        coded = await orchestrator.execute_workflow("coded", {"value": 0})
        assert coded.error().code is PluginErrorCode.InvalidConfiguration
        assert "cannot be stored" in coded.error().message
        data = await orchestrator.execute_workflow("plain", {"value": object()})
        assert data.error().code is PluginErrorCode.InvalidArgument
        assert (await orchestrator.find_executions()).value() == []


@pytest.mark.anyio
async def test_pluggable_serializer_is_used(tmp_path: Path) -> None:
    """A custom serializer stores what JSON cannot, and reads it back."""

    class ReprSerializer(JSONSerializer):
        def dumps(self, value: Any) -> bytes:
            return super().dumps(value if isinstance(value, dict) else {"repr": "opaque"})

    db = tmp_path / "runs.db"
    async with engine(SQLiteStore(db, serializer=ReprSerializer())) as orchestrator:
        orchestrator.register_workflow(chain("wf", "opaque")).value()
        eid = (await orchestrator.execute_workflow("wf", {})).value()
    async with engine(SQLiteStore(db)) as reader:
        results = (await reader.get_workflow_results(eid)).value()
    assert results["steps"]["s0"] == {
        **results["steps"]["s0"],
        "status": "completed",
        "result": {"repr": "opaque"},
    }


@pytest.mark.anyio
async def test_stored_executions_are_listed_filtered_and_readable(tmp_path: Path) -> None:
    """Another orchestrator on the same file lists, filters and reads past executions."""
    db = tmp_path / "runs.db"
    async with engine(db) as orchestrator:
        orchestrator.register_workflow(chain("a", "inc")).value()
        orchestrator.register_workflow(chain("b", "opaque")).value()
        first = (await orchestrator.execute_workflow("a", {"value": 0})).value()
        middle = time.time()
        second = (await orchestrator.execute_workflow("b", {})).value()
    async with engine(db) as reader:
        assert reader.list_executions() == []  # nothing in memory here

        async def ids(**filters: Any) -> list[str]:
            return [e["execution_id"] for e in (await reader.find_executions(**filters)).value()]

        assert await ids() == [first, second]
        assert await ids(workflow_id="b") == [second]
        assert await ids(status="completed") == [first]
        assert await ids(status="failed") == [second]
        assert await ids(since=middle) == [second]
        assert await ids(until=middle) == [first]
        status = (await reader.get_workflow_status(first)).value()
        assert status["status"] == "completed"
        assert status["completed_steps"] == 1
        results = (await reader.get_workflow_results(first)).value()
        assert results["data"] == {"value": 1}
        assert results["steps"]["s0"]["result"] == {"value": 1}
        missing = await reader.get_workflow_status("0" * 32)
        assert missing.error().code is PluginErrorCode.NotFound


@pytest.mark.anyio
async def test_cancelled_execution_records_cancelled_attempts(tmp_path: Path) -> None:
    """Cancelling an execution records its running attempt and its status as cancelled."""
    db = tmp_path / "runs.db"
    plugin = Steps()
    async with engine(db, plugin) as orchestrator:
        orchestrator.register_workflow(chain("wf", "forever", "inc")).value()
        eid = (await orchestrator.execute_workflow("wf", {}, async_execution=True)).value()
        await plugin.started.wait()
        (await orchestrator.cancel_workflow(eid)).value()
        await orchestrator.wait_workflow(eid)
    assert rows(db, "SELECT status FROM executions") == [("cancelled",)]
    assert rows(db, "SELECT step_id, status FROM step_attempts") == [("s0", "cancelled")]


@pytest.mark.anyio
async def test_memory_store_records_and_resume_rules_apply() -> None:
    """A MemoryStore records like a file; resuming a finished or unknown run is refused."""
    async with engine(MemoryStore()) as orchestrator:
        orchestrator.register_workflow(chain("wf", "inc")).value()
        eid = (await orchestrator.execute_workflow("wf", {"value": 0})).value()
        assert [e["execution_id"] for e in (await orchestrator.find_executions()).value()] == [eid]
        done = await orchestrator.resume_workflow(eid)
        assert done.error().code is PluginErrorCode.InvalidState
        assert "already finished" in done.error().message
        unknown = await orchestrator.resume_workflow("f" * 32)
        assert unknown.error().code is PluginErrorCode.NotFound
    async with engine(None) as plain:
        refused = await plain.resume_workflow(eid)
        assert refused.error().code is PluginErrorCode.InvalidState


# -- bad files ---------------------------------------------------------------------------


async def refused(path: Path, *, unreadable: bool = True, **options: Any) -> PluginErrorCode:
    """Open `path` through an orchestrator; the code of the error execute returns (and,
    if `unreadable`, listing executions and reading any execution return too)."""
    async with engine(SQLiteStore(path, **options)) as orchestrator:
        orchestrator.register_workflow(chain("wf", "inc")).value()
        started = await orchestrator.execute_workflow("wf", {"value": 0})
        assert not started
        assert isinstance(started.error(), StoreError)
        if unreadable:
            for answer in (
                await orchestrator.find_executions(),
                await orchestrator.get_workflow_status("e" * 32),
                await orchestrator.get_workflow_results("e" * 32),
                await orchestrator.cancel_workflow("e" * 32),
            ):
                assert answer.error().code is started.error().code
        return started.error().code


@pytest.mark.anyio
async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    """A text file given as the store gives InvalidFormat and keeps its bytes."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"hello, not a database\n" * 10)
    assert await refused(path) is PluginErrorCode.InvalidFormat
    assert path.read_bytes() == b"hello, not a database\n" * 10


@pytest.mark.anyio
async def test_another_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    """A SQLite file that is not a qtforge store gives InvalidFormat and is unchanged."""
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = path.read_bytes()
    assert await refused(path) is PluginErrorCode.InvalidFormat
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    """A store written by a newer qtforge gives IncompatibleVersion and is unchanged."""
    path = tmp_path / "runs.db"
    con = sqlite3.connect(path, isolation_level=None)
    migrate(con, SCHEMA_VERSION)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    before = path.read_bytes()
    assert await refused(path) is PluginErrorCode.IncompatibleVersion
    assert path.read_bytes() == before


@pytest.mark.anyio
async def test_a_locked_database_is_reported(tmp_path: Path) -> None:
    """A store locked by another writer gives ResourceUnavailable, not a hang (WAL
    readers still read it)."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.open()
    await store.aclose()
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        assert (
            await refused(path, unreadable=False, timeout=0.05)
            is PluginErrorCode.ResourceUnavailable
        )
        locker.execute("ROLLBACK")
    finally:
        locker.close()
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.anyio
async def test_an_old_schema_is_migrated_keeping_its_executions(tmp_path: Path) -> None:
    """A version-1 store is upgraded on open (through every migration); its executions
    stay readable, and one interrupted there can be resumed."""
    path = tmp_path / "runs.db"
    con = sqlite3.connect(path, isolation_level=None)
    migrate(con, 1)
    snapshot = json.dumps(chain("wf", "inc").to_dict())
    for eid, status, finished, data in (
        ("done", "completed", 2.0, b'{"value": 5}'),
        ("cut", "running", None, None),
    ):
        con.execute(
            "INSERT INTO executions (execution_id, workflow_id, snapshot, initial_data, status,"
            " created_at, updated_at, finished_at, data) VALUES (?, 'wf', ?, ?, ?, 1, 1, ?, ?)",
            (eid, snapshot, b'{"value": 4}', status, finished, data),
        )
        con.execute(
            "INSERT INTO step_runs (execution_id, step_id, status) VALUES (?, 's0', ?)",
            (eid, status),
        )
    con.close()
    async with engine(path) as reader:
        assert (await reader.get_workflow_results("done")).value()["data"] == {"value": 5}
        listed = (await reader.find_executions()).value()
        summaries = sorted((e["execution_id"], e["resumes"]) for e in listed)
        assert summaries == [("cut", 0), ("done", 0)]
        reader.register_workflow(chain("wf", "inc")).value()
        assert (await reader.resume_workflow("cut")).value() == "cut"
        assert (await reader.get_workflow_results("cut")).value()["data"] == {"value": 5}
    assert rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(path, "PRAGMA foreign_key_check") == []
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.anyio
async def test_a_chain_commits_each_completion_with_the_next_attempts_start(
    tmp_path: Path,
) -> None:
    """In a chain, a step's completion and the start of its dependent's attempt share
    one transaction (one write per step, not two), and the rows and events are those
    of separate writes."""
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    async with engine(store) as orchestrator:
        writes = 0
        write = store.write

        async def counted(changes: Any) -> None:
            nonlocal writes
            writes += 1
            await write(changes)

        store.write = counted  # type: ignore[method-assign]
        orchestrator.register_workflow(chain("wf", "inc", "inc", "inc")).value()
        await orchestrator.execute_workflow("wf", {"value": 0})
    assert writes == 5  # s0's start, 2 completions with the next start, the last, the end
    assert rows(db, "SELECT step_id, attempt, status FROM step_attempts ORDER BY 1") == [
        ("s0", 1, "succeeded"),
        ("s1", 1, "succeeded"),
        ("s2", 1, "succeeded"),
    ]
    assert [kind for (kind,) in rows(db, "SELECT type FROM events ORDER BY seq")] == [
        "ExecutionStarted",
        *["AttemptStarted", "StepCompleted"] * 3,
        "ExecutionCompleted",
    ]


class Bulky(Steps):
    async def bulky(self) -> dict[str, str]:
        return {"blob": "x" * 200_000}


def fill_up(store: SQLiteStore, pages: int) -> Any:
    """Let the store's file grow by at most `pages` pages: a full disk, simulated."""

    def cap(con: sqlite3.Connection) -> None:
        (count,) = con.execute("PRAGMA page_count").fetchone()
        con.execute(f"PRAGMA max_page_count = {count + pages}")

    return store._run(cap)


@pytest.mark.anyio
async def test_a_full_store_fails_the_execution_cleanly_and_keeps_the_file_intact(
    tmp_path: Path,
) -> None:
    """When the store cannot record a step's result (a full disk), that step fails with
    ResourceExhausted and so does the execution; the blocking execute still returns its
    id, the file passes its integrity check, and the store keeps the execution
    unfinished, so that it is resumed once there is room again."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(str(path))
    async with engine(store, Bulky()) as orchestrator:
        await fill_up(store, 16)
        orchestrator.register_workflow(chain("full", "inc", "bulky")).value()
        execution_id = (await orchestrator.execute_workflow("full", {"value": 1})).value()
        status = (await orchestrator.get_workflow_status(execution_id)).value()
        stored = rows(path, "SELECT status, finished_at FROM executions")
        await fill_up(store, 10_000)
        resumed = await orchestrator.resume_workflow(execution_id)
        results = (await orchestrator.get_workflow_results(execution_id)).value()
    assert (status["status"], status["error_code"]) == ("failed", "ResourceExhausted")
    assert status["steps"] == {"s0": "completed", "s1": "failed"}
    assert stored == [("running", None)]
    assert resumed.value() == execution_id
    assert results["status"] == "completed"
    assert rows(path, "SELECT step_id, attempts FROM step_runs ORDER BY 1") == [
        ("s0", 1),
        ("s1", 2),
    ]
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.anyio
async def test_a_store_too_full_to_record_an_execution_refuses_to_start_it(
    tmp_path: Path,
) -> None:
    """An execution whose record does not fit in the store is not started: execute
    answers ResourceExhausted, and the file passes its integrity check."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(str(path))
    async with engine(store) as orchestrator:
        await fill_up(store, 4)
        orchestrator.register_workflow(chain("full", "inc")).value()
        started = await orchestrator.execute_workflow("full", {"value": "x" * 200_000})
    assert not started
    assert started.error().code is PluginErrorCode.ResourceExhausted
    assert rows(path, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.anyio
async def test_stored_steps_read_back_in_workflow_order(tmp_path: Path) -> None:
    """Status and results of a stored execution list its steps in the workflow's order,
    as a live execution's do, not sorted by id."""
    path = tmp_path / "runs.db"
    workflow = Workflow("order")
    for step_id, deps in (("zeta", []), ("mid", ["zeta"]), ("alpha", ["mid"])):
        workflow.add_step(WorkflowStep(step_id, "steps", "inc", dependencies=deps))
    async with engine(path) as orchestrator:
        orchestrator.register_workflow(workflow).value()
        eid = (await orchestrator.execute_workflow("order", {"value": 0})).value()
    async with engine(path) as reader:
        status = (await reader.get_workflow_status(eid)).value()
        results = (await reader.get_workflow_results(eid)).value()
    assert list(status["steps"]) == ["zeta", "mid", "alpha"]
    assert list(results["steps"]) == ["zeta", "mid", "alpha"]
