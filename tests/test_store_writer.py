"""The SQLite store's writer thread: group commit, failures kept apart, shielded waits."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from qtforge.store import SQLiteStore


def insert(value: int) -> Callable[[sqlite3.Connection], int]:
    """A transaction body inserting `value`, which fails (after the insert) if negative."""

    def run(con: sqlite3.Connection) -> int:
        con.execute("INSERT INTO t VALUES (?)", (value,))
        if value < 0:
            raise ValueError(value)
        return value

    return run


@pytest.mark.anyio
async def test_concurrent_transactions_each_get_their_own_outcome(tmp_path: Path) -> None:
    """Transactions queued together commit together, yet one that fails is rolled back
    alone: the others commit and return their results, it raises its own error."""
    store = SQLiteStore(tmp_path / "runs.db")
    await store.open()
    try:
        await store._transaction(lambda con: con.execute("CREATE TABLE t (v INTEGER)"))
        outcomes: dict[int, object] = {}

        async def one(value: int) -> None:
            try:
                outcomes[value] = await store._transaction(insert(value))
            except ValueError as exc:
                outcomes[value] = exc

        async with anyio.create_task_group() as tg:
            for value in (1, 2, -3, 4, 5):
                tg.start_soon(one, value)
        stored = await store._run(lambda con: con.execute("SELECT v FROM t").fetchall())
    finally:
        await store.aclose()
    assert sorted(v for (v,) in stored) == [1, 2, 4, 5]
    assert {k: v for k, v in outcomes.items() if k > 0} == {1: 1, 2: 2, 4: 4, 5: 5}
    assert isinstance(outcomes[-3], ValueError)


@pytest.mark.anyio
async def test_a_cancelled_caller_still_waits_for_its_commit(tmp_path: Path) -> None:
    """Cancelling a task during a write does not cut its wait short: when the
    cancellation reaches the task, the write is already committed (another connection
    sees it)."""
    path = tmp_path / "runs.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store._transaction(lambda con: con.execute("CREATE TABLE t (v INTEGER)"))

        def slow(con: sqlite3.Connection) -> None:
            con.execute("INSERT INTO t VALUES (1)")
            time.sleep(0.2)  # long after the cancellation below

        with anyio.CancelScope() as scope:
            scope.cancel()  # already cancelled when the write starts
            await store._transaction(slow)
        reader = sqlite3.connect(path)
        try:
            seen = reader.execute("SELECT count(*) FROM t").fetchone()
        finally:
            reader.close()
    finally:
        await store.aclose()
    assert seen == (1,)
