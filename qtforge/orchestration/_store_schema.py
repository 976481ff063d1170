"""The SQLite store's schema, its migrations, and how journal changes become rows.

The schema's version is ``PRAGMA user_version`` and its owner ``PRAGMA application_id``;
migration n takes a database from version n - 1 to n, one transaction each.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from ._store import Change

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "apply_changes", "event", "migrate", "rows"]

APPLICATION_ID = 0x51544647  # "QTFG"
SCHEMA_VERSION = 3

# Migration n takes a database from version n - 1 to version n.
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE executions (
        execution_id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        initial_data BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'running', 'completed', 'failed', 'cancelled')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        error TEXT,
        error_code TEXT,
        data BLOB
    );
    CREATE INDEX executions_by_status ON executions (status, created_at);
    CREATE TABLE step_runs (
        execution_id TEXT NOT NULL REFERENCES executions,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        result BLOB,
        error TEXT,
        error_code TEXT,
        reason TEXT,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (execution_id, step_id)
    ) WITHOUT ROWID;
    CREATE TABLE step_attempts (
        execution_id TEXT NOT NULL,
        step_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        idempotency_key TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('started', 'succeeded', 'failed', 'timed_out', 'cancelled', 'abandoned')),
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT,
        PRIMARY KEY (execution_id, step_id, attempt),
        FOREIGN KEY (execution_id, step_id) REFERENCES step_runs
    ) WITHOUT ROWID;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        execution_id TEXT NOT NULL REFERENCES executions,
        step_id TEXT,
        attempt INTEGER,
        type TEXT NOT NULL,
        payload TEXT,
        ts REAL NOT NULL
    );
    CREATE INDEX events_by_execution ON events (execution_id, seq);
    """,
    2: """
    ALTER TABLE executions ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX executions_by_workflow ON executions (workflow_id, created_at);
    """,
    # A `paused` status (the CHECK constraint changes, so the table is rebuilt), the
    # lease of the process running an execution, cross-process cancel requests, the
    # outcomes of rollback steps, and each step's position in its workflow.
    3: """
    CREATE TABLE executions_v3 (
        execution_id TEXT PRIMARY KEY,
        workflow_id TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        initial_data BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('pending', 'running', 'paused', 'completed', 'failed', 'cancelled')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        error TEXT,
        error_code TEXT,
        data BLOB,
        resumes INTEGER NOT NULL DEFAULT 0,
        owner TEXT,
        lease_until REAL,
        cancel_requested TEXT
    );
    INSERT INTO executions_v3 (execution_id, workflow_id, snapshot, initial_data, status,
        created_at, updated_at, finished_at, error, error_code, data, resumes)
        SELECT execution_id, workflow_id, snapshot, initial_data, status, created_at,
        updated_at, finished_at, error, error_code, data, resumes FROM executions;
    DROP TABLE executions;
    ALTER TABLE executions_v3 RENAME TO executions;
    CREATE INDEX executions_by_status ON executions (status, created_at);
    CREATE INDEX executions_by_workflow ON executions (workflow_id, created_at);
    CREATE INDEX executions_by_owner ON executions (owner) WHERE owner IS NOT NULL;
    CREATE TABLE compensations (
        execution_id TEXT NOT NULL REFERENCES executions,
        step_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT,
        error_code TEXT,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (execution_id, step_id)
    ) WITHOUT ROWID;
    ALTER TABLE step_runs ADD COLUMN position INTEGER;
    """,
}


def migrate(con: sqlite3.Connection, target: int) -> None:
    """Bring the schema to version `target`, one migration per transaction."""
    version = con.execute("PRAGMA user_version").fetchone()[0]
    while version < target:
        version += 1
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    con.execute(statement)
            con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            con.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


def rows(con: sqlite3.Connection, query: str, *params: Any) -> list[dict[str, Any]]:
    cursor = con.execute(query, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def event(
    con: sqlite3.Connection,
    execution_id: str,
    step_id: str | None,
    attempt: int | None,
    kind: str,
    payload: Mapping[str, Any] | None,
    ts: float,
) -> None:
    con.execute(
        "INSERT INTO events (execution_id, step_id, attempt, type, payload, ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (execution_id, step_id, attempt, kind, None if payload is None else json.dumps(payload),
         ts),
    )  # fmt: skip


_STEP_EVENTS = {"failed": "StepFailed", "skipped": "StepSkipped", "cancelled": "StepCancelled"}


def apply_changes(con: sqlite3.Connection, changes: Sequence[Change]) -> None:
    """Apply a batch of journal changes (inside the caller's transaction)."""
    for kind, f in changes:
        ex, step, ts = f["execution_id"], f["step_id"], f["ts"]
        if kind == "attempt_started":
            con.execute(
                "INSERT INTO step_attempts (execution_id, step_id, attempt, idempotency_key,"
                " status, started_at) VALUES (?, ?, ?, ?, 'started', ?)",
                (ex, step, f["attempt"], f["key"], ts),
            )
            con.execute(
                "UPDATE step_runs SET status = 'running', attempts = ?,"
                " started_at = coalesce(started_at, ?) WHERE execution_id = ? AND step_id = ?",
                (f["attempt"], ts, ex, step),
            )
            event(con, ex, step, f["attempt"], "AttemptStarted", None, ts)
        elif kind == "step_completed":
            con.execute(
                "UPDATE step_attempts SET status = 'succeeded', finished_at = ?"
                " WHERE execution_id = ? AND step_id = ? AND attempt = ?",
                (ts, ex, step, f["attempt"]),
            )
            con.execute(
                "UPDATE step_runs SET status = 'completed', attempts = ?, result = ?,"
                " finished_at = ? WHERE execution_id = ? AND step_id = ?",
                (f["attempt"], f["result"], ts, ex, step),
            )
            event(con, ex, step, f["attempt"], "StepCompleted", None, ts)
        elif kind == "attempt_ended":
            con.execute(
                "UPDATE step_attempts SET status = ?, finished_at = ?, error = ?"
                " WHERE execution_id = ? AND step_id = ? AND attempt = ?",
                (f["outcome"], ts, f["error"], ex, step, f["attempt"]),
            )
            event(con, ex, step, f["attempt"], "AttemptFailed", {"error": f["error"]}, ts)
        elif kind == "step_ended":
            outcome = "cancelled" if f["status"] == "cancelled" else "failed"
            con.execute(
                "UPDATE step_attempts SET status = ?, finished_at = ?, error = ?"
                " WHERE execution_id = ? AND step_id = ? AND status = 'started'",
                (outcome, ts, f["error"], ex, step),
            )
            con.execute(
                "UPDATE step_runs SET status = ?, attempts = ?, error = ?, error_code = ?,"
                " reason = ?, finished_at = ? WHERE execution_id = ? AND step_id = ?",
                (f["status"], f["attempts"], f["error"], f["error_code"], f["reason"], ts, ex,
                 step),
            )  # fmt: skip
            payload = {"error": f["error"], "reason": f["reason"]}
            event(con, ex, step, None, _STEP_EVENTS[f["status"]], payload, ts)
        elif kind == "execution_state":
            con.execute(
                "UPDATE executions SET status = ?, updated_at = ? WHERE execution_id = ?",
                (f["status"], ts, ex),
            )
            kind_name = "ExecutionPaused" if f["status"] == "paused" else "ExecutionRunning"
            event(con, ex, None, None, kind_name, None, ts)
        elif kind == "execution_ending":
            con.execute(
                "UPDATE executions SET status = ?, error = ?, error_code = ?, updated_at = ?"
                " WHERE execution_id = ?",
                (f["status"], f["error"], f["error_code"], ts, ex),
            )
            event(con, ex, None, None, "ExecutionCompensating", {"error": f["error"]}, ts)
        elif kind == "compensation_ended":
            con.execute(
                "INSERT INTO compensations (execution_id, step_id, status, attempts, error,"
                " error_code, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ex, step, f["status"], f["attempts"], f["error"], f["error_code"],
                 f["started_at"], f["finished_at"]),
            )  # fmt: skip
            payload = {"status": f["status"], "error": f["error"]}
            event(con, ex, step, f["attempts"], "CompensationEnded", payload, ts)
        else:
            assert kind == "execution_finished", kind
            con.execute(
                "UPDATE executions SET status = ?, error = ?, error_code = ?, data = ?,"
                " updated_at = ?, finished_at = ?, lease_until = NULL WHERE execution_id = ?",
                (f["status"], f["error"], f["error_code"], f["data"], ts, ts, ex),
            )
            kind_name = "Execution" + f["status"].capitalize()
            event(con, ex, None, None, kind_name, {"error": f["error"]}, ts)
