"""The engine's side of the store: journaling new executions, resuming interrupted
ones, and the status/results dictionaries of executions known only to the store."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import Expected, PluginError, PluginErrorCode
from ._compensation import CompensationRecord
from ._execution import Execution
from ._fileproblems import WorkflowFileError
from ._model import StepStatus
from ._records import ExecutionStatus, StoredStep, iso_time
from ._spec import WorkflowSpec, to_workflow, validate_workflow
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


async def journal_new(
    store: ExecutionStore, execution: Execution, owner: str
) -> PluginError | None:
    """Record a new execution, leased to `owner`, and attach its journal; the problem
    if it cannot be stored."""
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
                "owner": owner,
                "lease_until": time.time() + store.lease,
            }
        )
    except StoreError as exc:
        return exc
    execution.journal = Journal(store, execution.id, step_ids)
    return None


async def resume(
    engine: AsyncPluginOrchestrator,
    store: ExecutionStore,
    execution_id: str,
    owner: str,
    *,
    to_cancel: bool = False,
) -> Expected[Execution, PluginError]:
    """Claim an interrupted execution for `owner` and rebuild it, its completed steps
    done. `to_cancel`: it will only be cancelled, so its plugins need to be loaded only
    if it has rollback steps to run. The workflow is rebuilt before the claim, so an
    execution that cannot be rebuilt here is left as it was."""
    try:
        stored = await store.load(execution_id)
        spec = None
        if stored is not None and stored["finished_at"] is None:
            rebuilt = _rebuild(engine, execution_id, stored["snapshot"], to_cancel)
            if not rebuilt:
                return Expected.fail(rebuilt.error())
            spec = rebuilt.value()
        row = await store.claim(execution_id, owner, time.time() + store.lease)
    except StoreError as exc:
        return Expected.fail(exc)
    assert spec is not None  # the claim refuses what was missing or finished
    serializer = store.serializer
    initial = serializer.loads(row["initial_data"])
    execution = Execution(engine, spec, initial, time.time(), execution_id)
    steps = row["steps"]
    execution.restore(
        {
            step_id: StoredStep(
                StepStatus(step["status"]),
                None if step["result"] is None else serializer.loads(step["result"]),
                step["attempts"],
                _stored_error(step),
                step["reason"],
                step["started_at"],
                step["finished_at"],
            )
            for step_id, step in steps.items()
            if step["status"] not in ("pending", "running")
        }
    )
    if row["status"] in ("failed", "cancelled"):
        execution.restore_ending(
            ExecutionStatus(row["status"]),
            _stored_error(row),
            {
                done["step_id"]: CompensationRecord(
                    done["status"], done["attempts"], _stored_error(done)
                )
                for done in row["compensations"]
            },
        )
    base = {step_id: step["attempts"] for step_id, step in steps.items()}
    execution.journal = Journal(store, execution_id, [s.step_id for s in spec.steps], base)
    return Expected.ok(execution)


def _stored_error(row: Mapping[str, Any]) -> PluginError | None:
    """The error a stored row records, as the `PluginError` it was."""
    if row["error"] is None:
        return None
    code = PluginErrorCode.__members__.get(row["error_code"], PluginErrorCode.UnknownError)
    return PluginError(code, row["error"])


def _rebuild(
    engine: AsyncPluginOrchestrator, execution_id: str, stored: str, to_cancel: bool
) -> Expected[WorkflowSpec, PluginError]:
    """The validated workflow of a stored snapshot."""
    try:
        snapshot = json.loads(stored)
        needs_plugins = not to_cancel or bool(snapshot.get("rollback_steps"))
        workflow = Workflow.from_dict(
            snapshot, plugin_manager=engine.plugin_manager if needs_plugins else None
        )
    except (ValueError, WorkflowFileError) as exc:
        return Expected.fail(
            PluginErrorCode.InvalidFormat,
            f"the stored workflow of execution {execution_id!r} cannot be rebuilt: {exc}",
        )
    return validate_workflow(workflow)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


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
        "started_at": iso_time(row["created_at"]),
        "finished_at": iso_time(row["finished_at"]),
        "error": row["error"],
        "error_code": row["error_code"],
        **_compensations(row, lambda done: done["status"]),
    }


def _compensations(
    row: Mapping[str, Any], view: Callable[[Mapping[str, Any]], Any]
) -> dict[str, Any]:
    """``{"compensations": ...}`` for a workflow with rollback steps, as live
    executions report them, else nothing."""
    if not row["compensations"] and not json.loads(row["snapshot"]).get("rollback_steps"):
        return {}
    return {"compensations": {done["step_id"]: view(done) for done in row["compensations"]}}


def _compensation_result(done: Mapping[str, Any]) -> dict[str, Any]:
    return {key: done[key] for key in ("status", "attempts", "error", "error_code")}


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
            "started_at": iso_time(begun),
            "finished_at": iso_time(ended),
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
        "started_at": iso_time(created),
        "finished_at": iso_time(finished),
        "duration_ms": None if finished is None else round((finished - created) * 1000, 3),
        "steps": steps,
        **_compensations(row, _compensation_result),
    }
