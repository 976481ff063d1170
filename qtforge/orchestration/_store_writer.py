"""`Writer`: the one thread that owns a SQLite store's connection.

A store runs all its SQL in one long-lived thread fed by a queue, instead of taking an
`anyio.to_thread.run_sync` hop per write (a round trip of 90 to 150 µs measured here,
this one's 45 to 60 µs): the loop puts a job on the queue and waits on an
`anyio.Event`, which the thread sets through the loop's thread-safe callback
(`_threads.event_waker`), so the loop never blocks on SQLite. Jobs run one at a time,
in the order they were queued.

Transaction jobs found waiting together in the queue are committed in one transaction
(group commit): each one's changes are still all or nothing, and none is acknowledged
before the commit that holds it. If the group fails, it is rolled back and its jobs are
run again one transaction each, so that each caller gets its own outcome.
"""

from __future__ import annotations

import collections
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

from ._store import crash_point
from ._threads import event_waker

__all__ = ["Writer"]

T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "result", "transaction", "wake")

    def __init__(self, fn: Callable[[sqlite3.Connection], T], transaction: bool) -> None:
        self.fn = fn
        self.transaction = transaction
        self.done = anyio.Event()
        self.wake = event_waker(self.done)
        self.result: T | None = None
        self.error: BaseException | None = None


class Writer:
    """Runs ``fn(connection)`` jobs in its own thread; `call` is the loop's side."""

    def __init__(self, name: str) -> None:
        self.con: sqlite3.Connection | None = None  # set by the opening job, in the thread
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool) -> T:
        """``fn(connection)`` run in the writer thread, in ``BEGIN IMMEDIATE; ...;
        COMMIT`` if `transaction`. A checkpoint; cancellation waits for the job to end
        (the wait is shielded), so that a commit is never cut short."""
        job = _Job(fn, transaction)
        self._jobs.put(job)
        with anyio.CancelScope(shield=True):
            await job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]  # set by the thread when no error

    async def stop(self) -> None:
        """End the thread once the jobs queued before have run (shielded)."""
        self._jobs.put(None)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._thread.join)

    # -- the thread ------------------------------------------------------------------

    def _serve(self) -> None:
        waiting: collections.deque[_Job[Any] | None] = collections.deque(maxlen=1)
        while True:
            job = waiting.pop() if waiting else self._jobs.get()
            if job is None:
                return
            if not job.transaction:
                self._run(job)
                continue
            group = [job]
            while True:  # the transactions queued behind it join its commit
                try:
                    follower = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if follower is None or not follower.transaction:
                    waiting.append(follower)  # runs (or stops the thread) after the group
                    break
                group.append(follower)
            if len(group) == 1 or not self._commit_group(group):
                for one in group:
                    self._run(one)

    def _commit_group(self, group: list[_Job[Any]]) -> bool:
        """Commit `group` in one transaction; False (rolled back) if any of it failed."""
        con = self.con
        assert con is not None
        try:
            results = _in_transaction(con, lambda con: [job.fn(con) for job in group])
        except BaseException:  # each job is run again alone, to get its own outcome
            return False
        for job, result in zip(group, results, strict=True):
            job.result = result
            job.wake()
        return True

    def _run(self, job: _Job[Any]) -> None:
        """Run `job` alone (in its own transaction if it is one) and wake its caller."""
        con = self.con
        try:
            if job.transaction:
                assert con is not None
                job.result = _in_transaction(con, job.fn)
            else:
                job.result = job.fn(con)  # type: ignore[arg-type]  # the opening job gets None
        except BaseException as exc:  # handed to the caller, whatever it is
            job.error = exc
        job.wake()


def _in_transaction(con: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    con.execute("BEGIN IMMEDIATE")
    try:
        result = fn(con)
        crash_point("in_commit")
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:  # SQLite may have rolled back already (a full disk)
            con.execute("ROLLBACK")
        raise
    return result
