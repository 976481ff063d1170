"""The engine's side of the store: journaling new executions, resuming interrupted
ones, and the status/results dictionaries of executions known only to the store."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._errors import Expected, PluginError, PluginErrorCode
from ._execution import Execution
from ._fileproblems import WorkflowFileError
from ._spec import to_workflow, validate_workflow
from ._store import ExecutionStore, Journal, StoreError
from ._store_sqlite import SQLiteStore
from ._workflow import Workflow

if TYPE_CHECKING:
    from ._engine import AsyncPluginOrchestrator

__all__ = ["as_store", "journal_new", "resume", "stored_results", "stored_status"]


def as_store(store: str | os.PathLike[str] | ExecutionStore | None) -> ExecutionStore | None:
    """The ``store=`` option as a store object (a path opens a `SQLiteStore`)."""
    if store is None or isinstance(store, ExecutionStore):
        return store
    if isinstance(store, str | os.PathLike):
        return SQLiteStore(store)
    raise TypeError(f"store must be a path or an ExecutionStore, not {type(store).__name__}")


async def journal_new(store: ExecutionStore, execution: Execution) -> PluginError | None:
    """Record a new execution and attach its journal; the problem if it cannot be stored."""
    spec = execution.spec
    try:
        snapshot = to_workflow(spec).to_dict()
    except ValueError as exc:
        return PluginError(
            PluginErrorCode.InvalidConfiguration,
            f"workflow {spec.workflow_id!r} cannot be stored, so it cannot run with a store: {exc}",
        )
    try:
        initial = store.serializer.dumps(dict(execution.initial_data))
    except Exception as exc:
        return PluginError(
            PluginErrorCode.InvalidArgument,
            f"the initial data of workflow {spec.workflow_id!r} cannot be stored by "
            f"{type(store.serializer).__name__}: {type(exc).__name__}: {exc}",
        )
    step_ids = [step.step_id for step in spec.steps]
    try:
        await store.create_execution(
            {
                "execution_id": execution.id,
                "workflow_id": spec.workflow_id,
                "snapshot": _json(snapshot),
                "initial_data": initial,
                "created_at": time.time(),
                "step_ids": step_ids,
            }
        )
    except StoreError as exc:
        return exc
    execution.journal = Journal(store, execution.id, step_ids)
    return None


async def resume(
    engine: AsyncPluginOrchestrator, store: ExecutionStore, execution_id: str
) -> Expected[Execution, PluginError]:
    """Claim an interrupted execution and rebuild it, its completed steps done."""
    try:
        row = await store.claim(execution_id)
    except StoreError as exc:
        return Expected.fail(exc)
    try:
        snapshot = json.loads(row["snapshot"])
        workflow = Workflow.from_dict(snapshot, plugin_manager=engine.plugin_manager)
    except (ValueError, WorkflowFileError) as exc:
        return Expected.fail(
            PluginErrorCode.InvalidFormat,
            f"the stored workflow of execution {execution_id!r} cannot be rebuilt: {exc}",
        )
    validated = validate_workflow(workflow)
    if not validated:
        return Expected.fail(validated.error())
    spec = validated.value()
    serializer = store.serializer
    initial = serializer.loads(row["initial_data"])
    execution = Execution(engine, spec, initial, time.time(), execution_id)
    steps = row["steps"]
    execution.restore(
        {
            step_id: serializer.loads(step["result"])
            for step_id, step in steps.items()
            if step["status"] == "completed"
        }
    )
    base = {step_id: step["attempts"] for step_id, step in steps.items()}
    for index, step in enumerate(spec.steps):
        if steps[step.step_id]["status"] == "completed":
            execution.records[index].attempts = base[step.step_id]
    execution.journal = Journal(store, execution_id, [s.step_id for s in spec.steps], base)
    return Expected.ok(execution)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def stored_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """`get_workflow_status`'s dictionary for an execution read from the store."""
    steps = row["steps"]
    statuses = {step_id: step["status"] for step_id, step in steps.items()}
    counted = list(statuses.values())
    finished = sum(s in ("completed", "failed", "skipped", "cancelled") for s in counted)
    running = [step_id for step_id, status in statuses.items() if status == "running"]
    return {
        "execution_id": row["execution_id"],
        "workflow_id": row["workflow_id"],
        "status": row["status"],
        "progress": round(100.0 * finished / max(len(steps), 1), 2),
        "current_step": running[0] if running else None,
        "running_steps": running,
        "completed_steps": counted.count("completed"),
        "failed_steps": counted.count("failed"),
        "skipped_steps": counted.count("skipped"),
        "cancelled_steps": counted.count("cancelled"),
        "total_steps": len(steps),
        "steps": statuses,
        "started_at": _iso(row["created_at"]),
        "finished_at": _iso(row["finished_at"]),
        "error": row["error"],
        "error_code": row["error_code"],
    }


def stored_results(row: Mapping[str, Any], store: ExecutionStore) -> dict[str, Any]:
    """`get_workflow_results`'s dictionary for an execution read from the store."""
    loads = store.serializer.loads
    created, finished = row["created_at"], row["finished_at"]
    steps: dict[str, Any] = {}
    for step_id, step in row["steps"].items():
        begun, ended = step["started_at"], step["finished_at"]
        entry = {
            "status": step["status"],
            "result": None if step["result"] is None else loads(step["result"]),
            "error": step["error"],
            "error_code": step["error_code"],
            "attempts": step["attempts"],
            "started_at": _iso(begun),
            "finished_at": _iso(ended),
            "duration_ms": None
            if begun is None or ended is None
            else round((ended - begun) * 1000, 3),
        }
        if step["reason"] is not None:
            entry["reason"] = step["reason"]
        steps[step_id] = entry
    return {
        "execution_id": row["execution_id"],
        "workflow_id": row["workflow_id"],
        "status": row["status"],
        "data": None if row["data"] is None else loads(row["data"]),
        "error": row["error"],
        "error_code": row["error_code"],
        "started_at": _iso(created),
        "finished_at": _iso(finished),
        "duration_ms": None if finished is None else round((finished - created) * 1000, 3),
        "steps": steps,
    }
