"""The execution store interface, result serializers, and the per-execution journal.

A store keeps what an execution did so that it can be read back by another process and
resumed after a crash. The engine talks to it through a `Journal`, one per execution:
writes that must be durable before the engine moves on (an attempt starts, a step
completes, the execution ends) are awaited, each one transaction run in the store's
thread and shielded from cancellation; the others (a step failed, was skipped or
cancelled, an attempt failed) are queued and committed with the next awaited write.
When a step's completion makes ready the dependent its lane runs next (a chain), that
dependent's attempt start is committed in the completion's transaction.
Without a store the engine keeps no journal at all, so the default path costs nothing.
"""

from __future__ import annotations

import abc
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .._errors import PluginError, PluginErrorCode
from ._records import error_fields

__all__ = [
    "ExecutionStore",
    "JSONSerializer",
    "Journal",
    "Serializer",
    "StoreError",
    "crash_point",
    "lease_held",
    "new_owner",
]

# Test hook: ``QTFORGE_CRASH_AT=point`` or ``point:n`` SIGKILLs this process the n-th
# time (default 1st) the store passes `point`. Read once, at import.
_CRASH_AT = os.environ.get("QTFORGE_CRASH_AT", "")
_crash_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if ``QTFORGE_CRASH_AT`` names this point (tests)."""
    if not _CRASH_AT:
        return
    point, _, nth = _CRASH_AT.partition(":")
    if point != name:
        return
    _crash_hits[name] = hits = _crash_hits.get(name, 0) + 1
    if hits == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def new_owner() -> str:
    """A lease owner id for this process: ``host/pid/token``."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def lease_held(owner: str | None, lease_until: float | None, now: float) -> bool:
    """Whether a stored lease still holds: taken, not run out, and (for an owner on
    this host) its process is alive, so that a killed process's executions can be
    resumed at once on its machine. A reused pid only makes the lease last its time."""
    if owner is None or lease_until is None or lease_until <= now:
        return False
    host, _, rest = owner.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


class StoreError(PluginError):
    """The store cannot be used: not a qtforge database, a newer schema, locked, ..."""


@runtime_checkable
class Serializer(Protocol):
    """Turns step results into bytes and back; it must raise on what it cannot store."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class JSONSerializer:
    """The default serializer: strict JSON (no NaN), UTF-8."""

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        return json.loads(data)


# A change: (kind, fields). Kinds: "attempt_started", "attempt_ended", "step_completed",
# "step_ended", "execution_state", "execution_ending", "compensation_ended",
# "execution_finished". Stores apply a batch in one transaction.
Change = tuple[str, dict[str, Any]]


class ExecutionStore(abc.ABC):
    """The store interface. Subclass it to keep executions elsewhere (`SQLiteStore`).

    Every method is a coroutine; `write` must apply all `changes` atomically, and must
    not be interrupted by cancellation once started.
    """

    serializer: Serializer
    # Seconds a process's claim on its running executions lasts without a heartbeat;
    # another process may resume an execution only once its lease has run out.
    lease: float = 30.0

    async def open(self) -> None:  # noqa: B027  # an optional hook, empty by design
        """Open or create the store (optional: nothing by default). Raises `StoreError`."""

    async def aclose(self) -> None:  # noqa: B027  # an optional hook, empty by design
        """Close the store; idempotent (optional: nothing by default)."""

    @abc.abstractmethod
    async def create_execution(self, row: Mapping[str, Any]) -> None:
        """Record a new execution (its id, workflow, snapshot, initial data, ...)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def write(self, changes: Sequence[Change]) -> None:
        """Apply `changes` in one transaction."""
        raise NotImplementedError

    @abc.abstractmethod
    async def claim(self, execution_id: str, owner: str, lease_until: float) -> dict[str, Any]:
        """Take an interrupted execution over for resuming: refuse it while another
        owner's lease on it is live, else mark its open attempts abandoned, set it
        running under `owner`'s lease, and return it as `load` does. Raises `StoreError`."""
        raise NotImplementedError

    @abc.abstractmethod
    async def heartbeat(
        self, owner: str, execution_ids: Sequence[str], lease_until: float
    ) -> dict[str, str]:
        """Extend `owner`'s leases on `execution_ids`; returns the cancel requests
        recorded for them (execution id -> reason)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def request_cancel(self, execution_id: str, reason: str) -> bool:
        """Ask the process running a stored execution to cancel it: True if a live
        lease holder will see the request, False if no process holds the execution
        (it was interrupted). Raises `StoreError` (``NotFound``; ``InvalidState`` for
        a finished execution or one already being cancelled)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def load(self, execution_id: str) -> dict[str, Any] | None:
        """An execution's row with its ``steps`` (by step id) and ``attempts``, or None."""
        raise NotImplementedError

    @abc.abstractmethod
    async def events(self, execution_id: str) -> list[dict[str, Any]]:
        """The execution's event log, in order."""
        raise NotImplementedError

    @abc.abstractmethod
    async def list_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[dict[str, Any]]:
        """Summaries of the stored executions, oldest first, filtered (times: epoch s)."""
        raise NotImplementedError


class Journal:
    """What one execution writes to the store; used only on the engine's loop."""

    __slots__ = (
        "_base",
        "_pending",
        "_prestarted",
        "_step_ids",
        "execution_id",
        "serializer",
        "store",
    )

    def __init__(
        self,
        store: ExecutionStore,
        execution_id: str,
        step_ids: Sequence[str],
        attempt_base: Mapping[str, int] | None = None,
    ) -> None:
        self.store = store
        self.serializer = store.serializer
        self.execution_id = execution_id
        self._step_ids = step_ids
        self._base = dict(attempt_base or {})
        self._pending: list[Change] = []
        # Step index -> the attempt number whose start is already committed (with the
        # completion of the step that made it ready).
        self._prestarted: dict[int, int] = {}

    def attempt_number(self, index: int, attempt: int) -> int:
        """The stored number of the execution-local `attempt` (resumes continue it)."""
        return self._base.get(self._step_ids[index], 0) + attempt

    def _change(self, kind: str, index: int | None, **fields: Any) -> Change:
        fields["execution_id"] = self.execution_id
        fields["step_id"] = None if index is None else self._step_ids[index]
        fields["ts"] = time.time()
        return (kind, fields)

    async def _flush(self, *changes: Change) -> None:
        batch, self._pending = self._pending, []
        batch.extend(changes)
        await self.store.write(batch)

    def _start(self, index: int, number: int) -> Change:
        key = f"{self.execution_id}/{self._step_ids[index]}"
        return self._change("attempt_started", index, attempt=number, key=key)

    async def attempt_started(self, index: int, attempt: int) -> None:
        number = self.attempt_number(index, attempt)
        if self._prestarted and self._prestarted.pop(index, None) == number:
            crash_point("attempt_started")  # committed with its dependency's completion
            return
        await self._flush(self._start(index, number))
        crash_point("attempt_started")

    def encode(self, step_id: str, result: Any) -> bytes:
        """`result` serialized; a `PluginError` naming the step if it cannot be."""
        try:
            return self.serializer.dumps(result)
        except Exception as exc:
            raise PluginError(
                PluginErrorCode.InvalidArgument,
                f"step {step_id!r}: its result cannot be stored by "
                f"{type(self.serializer).__name__}: {type(exc).__name__}: {exc}",
                repr(exc),
            ) from exc

    async def step_completed(
        self, index: int, attempt: int, blob: bytes, then_start: int | None = None
    ) -> None:
        """Commit the step's completion with its result; `then_start`, a dependent this
        completion makes ready and that runs next, has its first attempt's start
        committed in the same transaction (its `attempt_started` then writes nothing)."""
        number = self.attempt_number(index, attempt)
        completion = self._change("step_completed", index, attempt=number, result=blob)
        if then_start is None:
            await self._flush(completion)
        else:
            follower = self.attempt_number(then_start, 1)
            await self._flush(completion, self._start(then_start, follower))
            self._prestarted[then_start] = follower
        crash_point("step_completed")

    def attempt_ended(self, index: int, attempt: int, outcome: str, error: PluginError) -> None:
        number = self.attempt_number(index, attempt)
        self._pending.append(
            self._change(
                "attempt_ended",
                index,
                attempt=number,
                outcome=outcome,
                error=error_fields(error)["error"],
            )
        )

    def step_ended(
        self,
        index: int,
        status: str,
        attempts: int,
        error: PluginError | None,
        reason: str | None,
    ) -> None:
        self._pending.append(
            self._change(
                "step_ended",
                index,
                status=status,
                attempts=self._base.get(self._step_ids[index], 0) + attempts,
                **error_fields(error),
                reason=reason,
            )
        )

    async def state_changed(self, status: str) -> None:
        """The execution is now ``paused``, or ``running`` again."""
        await self._flush(self._change("execution_state", None, status=status))

    async def ending(self, status: str, error: PluginError | None) -> None:
        """The execution ends `status` once its rollback steps have run: a crash
        before then is resumed by running the rest of them, not its steps."""
        change = self._change("execution_ending", None, status=status, **error_fields(error))
        await self._flush(change)

    async def compensation_ended(
        self,
        index: int,
        status: str,
        attempts: int,
        error: PluginError | None,
        started: float,
        ended: float,
    ) -> None:
        """The rollback step of step `index` ended (times: seconds since the epoch)."""
        await self._flush(
            self._change(
                "compensation_ended",
                index,
                status=status,
                attempts=attempts,
                started_at=started,
                finished_at=ended,
                **error_fields(error),
            )
        )

    async def finished(self, status: str, error: PluginError | None, data: Any) -> None:
        try:
            blob: bytes | None = self.serializer.dumps(data)
        except Exception:
            blob = None
        await self._flush(
            self._change(
                "execution_finished",
                None,
                status=status,
                **error_fields(error),
                data=blob,
            )
        )
