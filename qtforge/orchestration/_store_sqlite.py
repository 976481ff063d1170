"""`SQLiteStore`: executions in one SQLite file (stdlib `sqlite3`, WAL mode).

One connection, owned by the store's writer thread (`_store_writer.Writer`); each write
is ``BEGIN IMMEDIATE; ...; COMMIT`` in one job of that thread, waited for shielded from
cancellation so that a cancelled step never leaves its write half done. The schema
carries a version (``PRAGMA user_version``) and an application id; older schemas are
migrated on open, newer ones and foreign files are refused without being touched.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._errors import PluginErrorCode
from ._store import Change, ExecutionStore, JSONSerializer, Serializer, StoreError, lease_held
from ._store_schema import APPLICATION_ID, SCHEMA_VERSION, apply_changes, event, migrate, rows
from ._store_writer import Writer

__all__ = ["MemoryStore", "SQLiteStore"]

T = TypeVar("T")

_SQLITE_HEADER = b"SQLite format 3\x00"


class SQLiteStore(ExecutionStore):
    """Executions kept in a SQLite file; pass it (or just its path) as ``store=``.

    Args:
        path: The database file, created (owner-only permissions) if missing;
            ``":memory:"`` for a private in-memory database.
        synchronous: ``"NORMAL"`` (default: a crashed *process* loses no committed
            work) or ``"FULL"`` (a crashed *machine* loses none either).
        serializer: Turns step results into bytes (default: `JSONSerializer`).
        timeout: Seconds to wait for a lock held by another process.
        lease: Seconds a process's hold on its running executions lasts without a
            heartbeat (it renews them about every second). Another process may resume
            an execution only once its holder's lease has run out.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        serializer: Serializer | None = None,
        timeout: float = 5.0,
        lease: float = 30.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = str(path) if str(path) == ":memory:" else os.fspath(Path(path))
        self.synchronous = synchronous
        self.serializer = serializer or JSONSerializer()
        self.timeout = timeout
        if not lease > 0:
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self.lease = lease
        self._writer: Writer | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, synchronous={self.synchronous!r})"

    # -- plumbing --------------------------------------------------------------------

    def _open_writer(self) -> Writer:
        if self._writer is None or self._writer.con is None:
            raise StoreError(PluginErrorCode.InvalidState, f"{self!r} is not open")
        return self._writer

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in the store's writer thread, shielded."""
        return await self._open_writer().call(fn, transaction=False)

    async def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(connection)`` in one transaction in the writer thread, shielded."""
        try:
            return await self._open_writer().call(fn, transaction=True)
        except sqlite3.OperationalError as exc:
            raise _locked_or(exc, self.path) from exc

    # -- opening ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is None:
            writer = Writer(f"qtforge-store {self.path}")

            def connect(_: sqlite3.Connection | None) -> None:
                writer.con = self._connect()

            try:
                await writer.call(connect, transaction=False)
            except BaseException:
                await writer.stop()
                raise
            self._writer = writer

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            _check_file(self.path)
        con = sqlite3.connect(self.path, isolation_level=None, timeout=self.timeout)
        try:
            self._prepare(con)
        except BaseException:
            con.close()
            raise
        return con

    def _prepare(self, con: sqlite3.Connection) -> None:
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise _locked_or(exc, self.path) from exc
        if tables and app_id != APPLICATION_ID:
            raise StoreError(
                PluginErrorCode.InvalidFormat,
                f"{self.path!r} is a SQLite database but not a qtforge store",
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                PluginErrorCode.IncompatibleVersion,
                f"{self.path!r} has store schema version {version}, newer than this "
                f"qtforge's {SCHEMA_VERSION}: upgrade qtforge to open it",
            )
        try:
            if self.path != ":memory:":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={self.synchronous}")
            migrate(con, SCHEMA_VERSION)
            con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.OperationalError as exc:
            raise _locked_or(exc, self.path) from exc

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                await writer.call(lambda con: con.close(), transaction=False)
            finally:
                await writer.stop()

    # -- writing ---------------------------------------------------------------------

    async def create_execution(self, row: Mapping[str, Any]) -> None:
        def create(con: sqlite3.Connection) -> None:
            now = row["created_at"]
            con.execute(
                "INSERT INTO executions (execution_id, workflow_id, snapshot, initial_data,"
                " status, created_at, updated_at, owner, lease_until)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (row["execution_id"], row["workflow_id"], row["snapshot"], row["initial_data"],
                 now, now, row["owner"], row["lease_until"]),
            )  # fmt: skip
            con.executemany(
                "INSERT INTO step_runs (execution_id, step_id, status, position)"
                " VALUES (?, ?, 'pending', ?)",
                [(row["execution_id"], step_id, n) for n, step_id in enumerate(row["step_ids"])],
            )
            event(con, row["execution_id"], None, None, "ExecutionStarted", None, now)

        await self._transaction(create)

    async def write(self, changes: Sequence[Change]) -> None:
        if changes:
            await self._transaction(lambda con: apply_changes(con, changes))

    async def claim(self, execution_id: str, owner: str, lease_until: float) -> dict[str, Any]:
        def claim(con: sqlite3.Connection) -> None:
            now = time.time()
            found = _unfinished(con, execution_id, "resumed")
            if found["owner"] != owner and lease_held(found["owner"], found["lease_until"], now):
                raise StoreError(
                    PluginErrorCode.InvalidState,
                    f"execution {execution_id!r} is {found['status']} in another process "
                    f"({found['owner']}): it can be resumed here once that process is gone",
                )
            con.execute(
                "UPDATE step_attempts SET status = 'abandoned', finished_at = ?"
                " WHERE execution_id = ? AND status = 'started'",
                (now, execution_id),
            )
            if found["status"] in ("failed", "cancelled"):  # cut short while compensating
                status = found["status"]
            else:
                status = "running"
                con.execute(
                    "UPDATE step_runs SET status = 'pending' WHERE execution_id = ?"
                    " AND status != 'completed'",
                    (execution_id,),
                )
            con.execute(
                "UPDATE executions SET status = ?, resumes = resumes + 1,"
                " updated_at = ?, owner = ?, lease_until = ? WHERE execution_id = ?",
                (status, now, owner, lease_until, execution_id),
            )
            event(con, execution_id, None, None, "ExecutionResumed", None, now)

        await self._transaction(claim)
        loaded = await self.load(execution_id)
        assert loaded is not None
        return loaded

    async def heartbeat(
        self, owner: str, execution_ids: Sequence[str], lease_until: float
    ) -> dict[str, str]:
        def beat(con: sqlite3.Connection) -> dict[str, str]:
            requests = {}
            for execution_id in execution_ids:
                found = con.execute(
                    "UPDATE executions SET lease_until = ? WHERE execution_id = ?"
                    " AND owner = ? AND finished_at IS NULL RETURNING cancel_requested",
                    (lease_until, execution_id, owner),
                ).fetchone()
                if found is not None and found[0] is not None:
                    requests[execution_id] = found[0]
            return requests

        return await self._transaction(beat)

    async def request_cancel(self, execution_id: str, reason: str) -> bool:
        def request(con: sqlite3.Connection) -> bool:
            found = _unfinished(con, execution_id, "cancelled")
            if found["cancel_requested"] is not None:
                raise StoreError(
                    PluginErrorCode.InvalidState,
                    f"execution {execution_id!r} is already being cancelled",
                )
            if not lease_held(found["owner"], found["lease_until"], time.time()):
                return False
            con.execute(
                "UPDATE executions SET cancel_requested = ? WHERE execution_id = ?",
                (reason, execution_id),
            )
            return True

        return await self._transaction(request)

    # -- reading ---------------------------------------------------------------------

    async def load(self, execution_id: str) -> dict[str, Any] | None:
        def load(con: sqlite3.Connection) -> dict[str, Any] | None:
            row = rows(con, "SELECT * FROM executions WHERE execution_id = ?", execution_id)
            if not row:
                return None
            execution = row[0]
            execution["steps"] = {
                step["step_id"]: step
                for step in rows(
                    con,
                    "SELECT * FROM step_runs WHERE execution_id = ? ORDER BY position, step_id",
                    execution_id,
                )
            }
            execution["attempts"] = rows(
                con,
                "SELECT * FROM step_attempts WHERE execution_id = ? ORDER BY started_at, attempt",
                execution_id,
            )
            execution["compensations"] = rows(
                con,
                "SELECT * FROM compensations WHERE execution_id = ? ORDER BY started_at",
                execution_id,
            )
            return execution

        return await self._run(load)

    async def events(self, execution_id: str) -> list[dict[str, Any]]:
        return await self._run(
            lambda con: rows(
                con,
                "SELECT seq, step_id, attempt, type, payload, ts FROM events"
                " WHERE execution_id = ? ORDER BY seq",
                execution_id,
            )
        )

    async def list_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        where, params = ["1"], []
        for clause, value in (
            ("workflow_id = ?", workflow_id),
            ("status = ?", status),
            ("created_at >= ?", since),
            ("created_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        query = (
            "SELECT execution_id, workflow_id, status, created_at, updated_at, finished_at,"
            f" error, error_code, resumes FROM executions WHERE {' AND '.join(where)}"
            " ORDER BY created_at, execution_id"
        )
        return await self._run(lambda con: rows(con, query, *params))


def _unfinished(con: sqlite3.Connection, execution_id: str, verb: str) -> dict[str, Any]:
    """The row of a stored execution that has not finished; `StoreError` otherwise."""
    found = rows(con, "SELECT * FROM executions WHERE execution_id = ?", execution_id)
    if not found:
        raise StoreError(PluginErrorCode.NotFound, f"no stored execution with id {execution_id!r}")
    if found[0]["finished_at"] is not None:
        raise StoreError(
            PluginErrorCode.InvalidState,
            f"execution {execution_id!r} has already finished ({found[0]['status']}): "
            f"it cannot be {verb}",
        )
    return found[0]


def _check_file(path: str) -> None:
    """Refuse a file that is not SQLite without opening it; create a missing one 0600."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as file:
            header = file.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise StoreError(
                PluginErrorCode.InvalidFormat, f"{path!r} is not a qtforge store (not SQLite)"
            ) from None
    except OSError as exc:
        raise StoreError(
            PluginErrorCode.FileNotFound, f"cannot create the store {path!r}: {exc}"
        ) from exc
    else:
        os.close(fd)


def _locked_or(exc: sqlite3.DatabaseError, path: str) -> StoreError:
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StoreError(
            PluginErrorCode.ResourceUnavailable,
            f"the store {path!r} is locked by another connection: {message}",
        )
    if "full" in message:
        return StoreError(
            PluginErrorCode.ResourceExhausted, f"the store {path!r} is full: {message}"
        )
    if "not a database" in message:
        return StoreError(PluginErrorCode.InvalidFormat, f"{path!r} is not a qtforge store")
    return StoreError(PluginErrorCode.SystemError, f"the store {path!r} failed: {message}")


class MemoryStore(SQLiteStore):
    """A store that lives as long as the orchestrator: a private in-memory SQLite
    database. Useful to query attempts and events, or resume within one process."""

    def __init__(self, *, serializer: Serializer | None = None) -> None:
        super().__init__(":memory:", serializer=serializer)

    def __repr__(self) -> str:
        return "MemoryStore()"
