"""`AsyncPluginOrchestrator`: the async-native engine behind every qtforge API."""

from __future__ import annotations

import inspect
import os
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread

from .._errors import Expected, PluginError, PluginErrorCode
from .._plugins import PluginManager
from ._binding import BinderCache
from ._durable import as_store, journal_new, resume, stored_results, stored_status
from ._events import EventHub, EventStream
from ._execution import Execution
from ._executors import Executor, ExecutorSet
from ._logging import get_logger, wants_debug
from ._registry import WorkflowRegistry, check_id
from ._store import ExecutionStore, StoreError, new_owner
from ._workflow import RetryPredicate

__all__ = ["AsyncPluginOrchestrator"]

_SHUTDOWN_GRACE = 5.0  # seconds each plugin's shutdown hook may take
_CANCELLED = "cancelled by request"


class AsyncPluginOrchestrator(WorkflowRegistry):
    """The workflow engine, for asyncio and trio applications.

    Use it as ``async with AsyncPluginOrchestrator() as orchestrator:``. Registry methods
    are plain (they never wait); the rest are coroutines, return `Expected` results like
    the sync `PluginOrchestrator`, and must be called from the task group's event loop.

    Args:
        plugin_manager: Where steps find their plugins. By default a new manager that has
            discovered the installed ``qtforge.plugins`` entry points.
        max_concurrency: Most steps of one execution running at once (``None``: no bound;
            Sequential mode always runs one).
        thread_limit: Most worker threads running sync plugin methods at once, across
            all executions of this orchestrator.
        retention: Finished executions kept for status and results queries; the oldest
            are forgotten first.
        retry_on: Decides for every step without its own ``retry_on`` whether an error may
            be retried (default: any ``Exception``).
        event_buffer: Events buffered per `events` subscriber before the oldest is dropped.
        seed: Seeds the retry jitter, for reproducible runs.
        executors: Executors by name, added to (or replacing) the built-in ``"async"``,
            ``"thread"``, ``"process"`` and ``"dask"`` (see `qtforge.executors`). The
            orchestrator closes them, and the built-in ones it used, when it closes.
        default_executor: The executor for steps that name none (``step.executor``).
            ``None`` (the default): ``async def`` methods run on the event loop, plain
            ones in worker threads.
        store: Where executions are recorded so that they outlive the process: a path
            (a `SQLiteStore` file) or an `ExecutionStore`. ``None`` (the default): in
            memory only, as long as `retention` allows. With a store, `resume_workflow`
            continues an interrupted execution and status/results of stored ones can be
            read by any process.
    """

    def __init__(
        self,
        plugin_manager: PluginManager | None = None,
        *,
        max_concurrency: int | None = None,
        thread_limit: int = 32,
        retention: int = 1000,
        retry_on: RetryPredicate | None = None,
        event_buffer: int = 10_000,
        seed: int | None = None,
        executors: Mapping[str, Executor] | None = None,
        default_executor: str | None = None,
        store: str | os.PathLike[str] | ExecutionStore | None = None,
    ) -> None:
        super().__init__()
        if plugin_manager is not None and not isinstance(plugin_manager, PluginManager):
            raise TypeError(
                f"plugin_manager must be a PluginManager, not {type(plugin_manager).__name__}"
            )
        for name, value, optional in (
            ("max_concurrency", max_concurrency, True),
            ("thread_limit", thread_limit, False),
            ("retention", retention, False),
            ("event_buffer", event_buffer, False),
        ):
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.plugin_manager = plugin_manager or PluginManager(discover=True)
        self.max_concurrency = max_concurrency or 1_000_000_000
        self.thread_limit = thread_limit
        self.retention = retention
        self.retry_on = retry_on
        self.event_buffer = event_buffer
        self._rng = random.Random(seed)
        self._executors = ExecutorSet(executors, default_executor)
        self.default_executor = default_executor
        self._binders = BinderCache()
        self._hub = EventHub()
        self._log = get_logger("qtforge.engine")
        self._executions: dict[str, Execution] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._initialized: dict[int, object] = {}
        self._init_locks: dict[int, anyio.Lock] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        self._thread_limiter: anyio.CapacityLimiter
        self._state = "new"  # -> open -> closed
        self._stopped: anyio.Event | None = None
        self.store = as_store(store)
        self._store_failure: PluginError | None = None
        self._owner = new_owner()  # this orchestrator's name on its store leases
        self._leasing = False  # `_keep_leases` runs

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(
                f"an AsyncPluginOrchestrator can be entered once (it is {self._state})"
            )
        self._thread_limiter = anyio.CapacityLimiter(self.thread_limit)
        self._executors.open(self._thread_limiter)
        if self.store is not None:
            try:
                await self.store.open()
            except StoreError as exc:  # reported by every call that needs the store
                self._store_failure = exc
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._state = "open"
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        """Cancel the executions still running, wait for them to end, then run the
        plugins' ``shutdown()`` hooks and close the executors (each bounded, shielded
        from cancellation)."""
        self._state = "closed"
        assert self._task_group is not None
        for execution in list(self._executions.values()):
            if not execution.finished:
                execution.cancel("the orchestrator is closing")
        try:
            self._task_group.cancel_scope.cancel()
            return await self._task_group.__aexit__(*exc_info)
        except BaseExceptionGroup as group:
            if group.exceptions == (exc_info[1],):  # the body's own: raise it unwrapped
                return False
            raise
        finally:
            self._hub.close()
            with anyio.CancelScope(shield=True):
                await self._shutdown_plugins()
                await self._executors.aclose()
                if self.store is not None:
                    await self.store.aclose()

    async def aclose(self) -> None:
        """Same as leaving ``async with``."""
        await self.__aexit__(None, None, None)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the orchestrator until `shutdown` is called (the sync facade's service task)."""
        self._stopped = anyio.Event()
        async with self:
            task_status.started()
            await self._stopped.wait()

    async def shutdown(self) -> None:
        """Make `serve` return, closing the orchestrator."""
        assert self._stopped is not None
        self._stopped.set()
        await anyio.lowlevel.checkpoint()

    # -- execution -------------------------------------------------------------------

    async def execute_workflow(
        self,
        workflow_id: str,
        initial_data: Mapping[str, Any] | None = None,
        async_execution: bool = False,
    ) -> Expected[str, PluginError]:
        """Start an execution of a registered workflow; returns its execution id.

        Checkpoint. Blocking mode (the default) returns once the execution has finished
        (a failed one too: read the outcome from status and results); cancelling the
        caller cancels the execution. With ``async_execution=True`` it returns at once and
        the execution runs in the orchestrator's own task group.
        """
        check_id("workflow_id", workflow_id)
        if not isinstance(async_execution, bool):
            raise TypeError(f"async_execution must be a bool, not {type(async_execution).__name__}")
        if initial_data is not None and not isinstance(initial_data, Mapping):
            raise TypeError(f"initial_data must be a mapping, not {type(initial_data).__name__}")
        await anyio.lowlevel.checkpoint()
        if self._state != "open":
            return Expected.fail(
                PluginErrorCode.InvalidState,
                f"the orchestrator is {self._state}: use it as 'async with "
                "AsyncPluginOrchestrator() as orchestrator:'",
            )
        spec = self._specs.get(workflow_id)
        if spec is None:
            return Expected.fail(self._workflow_not_found(workflow_id))
        execution = Execution(self, spec, dict(initial_data or {}), time.time())
        if self.store is not None:
            problem = self._store_failure or await journal_new(self.store, execution, self._owner)
            if problem is not None:
                return Expected.fail(problem)
        return await self._start(execution, async_execution)

    async def resume_workflow(
        self, execution_id: str, async_execution: bool = False
    ) -> Expected[str, PluginError]:
        """Continue an execution that was paused (`pause_workflow`), or one that was
        interrupted (its process died), from the store.

        Steps that completed are not run again: their stored results feed their
        dependents. Steps that were running are run again (at least once: use
        `StepContext.idempotency_key` to make their side effects safe), each attempt
        recorded. Blocks like `execute_workflow` unless ``async_execution=True``.
        ``NotFound`` for an unknown execution, ``InvalidState`` for one that has
        finished or runs here (not paused), or, for a stored one, without a store.
        """
        check_id("execution_id", execution_id)
        await anyio.lowlevel.checkpoint()
        if self._state != "open":
            return Expected.fail(PluginErrorCode.InvalidState, f"the orchestrator is {self._state}")
        live = self._executions.get(execution_id)
        if live is not None and live.pause_requested and not live.finished:
            if live.cancel_requested:
                return Expected.fail(
                    PluginErrorCode.InvalidState,
                    f"execution {execution_id!r} is being cancelled",
                )
            live.resume()
            if not async_execution:
                await live.done.wait()
            return Expected.ok(execution_id)
        if self.store is None:
            return Expected.fail(
                PluginErrorCode.InvalidState, "resume_workflow needs an orchestrator with a store"
            )
        if self._store_failure is not None:
            return Expected.fail(self._store_failure)
        known = self._executions.get(execution_id)
        if known is not None and not known.finished:
            return Expected.fail(
                PluginErrorCode.InvalidState, f"execution {execution_id!r} is running here"
            )
        resumed = await resume(self, self.store, execution_id, self._owner)
        if not resumed:
            return Expected.fail(resumed.error())
        self._executions.pop(execution_id, None)
        self._finished.pop(execution_id, None)
        return await self._start(resumed.value(), async_execution)

    async def _start(
        self, execution: Execution, async_execution: bool
    ) -> Expected[str, PluginError]:
        self._executions[execution.id] = execution
        assert self._task_group is not None
        if execution.journal is not None and not self._leasing:
            self._leasing = True
            self._task_group.start_soon(self._keep_leases, name="qtforge.leases")
        if async_execution:
            self._task_group.start_soon(execution.run, name=f"qtforge.execution:{execution.id}")
        else:
            await execution.run()
        return Expected.ok(execution.id)

    async def run_workflow(
        self, workflow_id: str, initial_data: Mapping[str, Any] | None = None
    ) -> Expected[dict[str, Any], PluginError]:
        """Execute a workflow and return its results (see `get_workflow_results`).

        Checkpoint; cancelling it cancels the execution.
        """
        started = await self.execute_workflow(workflow_id, initial_data)
        if not started:
            return Expected.fail(started.error())
        return Expected.ok(self._executions[started.value()].results_dict())

    async def wait_workflow(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """Wait until an execution has finished; returns its results.

        Checkpoint; cancelling the wait leaves the execution running.
        """
        found = self._find(execution_id)
        if not found:
            await anyio.lowlevel.checkpoint()
            return Expected.fail(found.error())
        execution = found.value()
        await execution.done.wait()
        return Expected.ok(execution.results_dict())

    async def cancel_workflow(self, execution_id: str) -> Expected[None, PluginError]:
        """Cancel a pending or running execution.

        Checkpoint. It returns once cancellation is requested; running async steps are
        cancelled, sync steps see `StepContext.cancelled` turn true and are no longer
        waited for, and the execution ends ``cancelled`` as soon as its tasks unwind.

        With a store, an execution run by another process is cancelled too: the
        request is recorded, and that process acts on it within about a second. One
        whose process died is ended ``cancelled`` here (its rollback steps run here,
        so their plugins must be loaded). ``NotFound`` for an unknown execution,
        ``InvalidState`` if it has already finished or is being cancelled.
        """
        await anyio.lowlevel.checkpoint()
        found = self._find_live(execution_id)
        if found:
            found.value().cancel(_CANCELLED)
            return Expected.ok(None)
        if execution_id in self._executions or self.store is None or self._state != "open":
            return Expected.fail(found.error())
        if self._store_failure is not None:  # the store may know it, but cannot be read
            return Expected.fail(self._store_failure)
        return await self._cancel_stored(execution_id)

    async def _cancel_stored(self, execution_id: str) -> Expected[None, PluginError]:
        """Cancel an execution known only to the store: ask the process that holds it,
        or, if none does (it was interrupted), end it here, compensations included."""
        assert self.store is not None
        try:
            held = await self.store.request_cancel(execution_id, _CANCELLED)
        except StoreError as exc:
            return Expected.fail(exc)
        if not held:
            resumed = await resume(self, self.store, execution_id, self._owner, to_cancel=True)
            if not resumed:
                return Expected.fail(resumed.error())
            execution = resumed.value()
            execution.cancel(_CANCELLED)
            await self._start(execution, async_execution=True)
        return Expected.ok(None)

    async def _keep_leases(self) -> None:
        """While executions of this orchestrator are unfinished in its store, renew their
        leases about every second, and cancel those another process asked to cancel."""
        store = self.store
        assert store is not None
        interval = min(1.0, store.lease / 3)
        try:
            while True:
                await anyio.sleep(interval)
                held = {
                    execution.id: execution
                    for execution in self._executions.values()
                    if execution.journal is not None and not execution.finished
                }
                if not held:
                    return
                try:
                    requests = await store.heartbeat(
                        self._owner, list(held), time.time() + store.lease
                    )
                except StoreError as exc:  # the leases may lapse; the executions go on
                    self._log.error("store.heartbeat_failed", error=str(exc))
                    continue
                for execution_id, reason in requests.items():
                    execution = held[execution_id]
                    if not execution.cancel_requested:
                        execution.cancel(reason)
        finally:
            self._leasing = False

    async def pause_workflow(self, execution_id: str) -> Expected[None, PluginError]:
        """Pause a pending or running execution: no new step starts.

        Checkpoint. It returns once the pause is requested; steps already running (with
        their retries) go on to their outcome, and the status reads ``paused`` once none
        runs. `resume_workflow` continues it, `cancel_workflow` ends it ``cancelled``;
        the workflow timeout keeps running while paused. An execution whose last
        running step finishes while the pause is requested simply finishes.
        ``NotFound`` for an unknown execution, ``InvalidState`` if it has finished, is
        being cancelled, or is already paused.
        """
        await anyio.lowlevel.checkpoint()
        found = self._find_live(execution_id)
        if not found:
            return Expected.fail(found.error())
        execution = found.value()
        if execution.pause_requested:
            return Expected.fail(
                PluginErrorCode.InvalidState, f"execution {execution_id!r} is already paused"
            )
        execution.pause()
        return Expected.ok(None)

    async def get_workflow_status(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """The status dictionary of an execution, running or finished (or, with a
        store, recorded by any process). Checkpoint."""
        await anyio.lowlevel.checkpoint()
        found = self.status_now(execution_id)
        if found or self.store is None:
            return found
        if self._store_failure is not None:  # the store may know it, but cannot be read
            return Expected.fail(self._store_failure)
        row = await self._stored(execution_id)
        return found if row is None else Expected.ok(stored_status(row))

    async def _stored(self, execution_id: str) -> dict[str, Any] | None:
        if self.store is None or self._store_failure is not None or self._state != "open":
            return None
        return await self.store.load(execution_id)

    async def find_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Expected[list[dict[str, Any]], PluginError]:
        """Summaries of the executions in the store (with none: those still in memory),
        oldest first, filtered by workflow, status and start time (``since`` inclusive,
        ``until`` exclusive, seconds since the epoch). Checkpoint."""
        await anyio.lowlevel.checkpoint()
        if self.store is not None:
            if self._store_failure is not None:
                return Expected.fail(self._store_failure)
            if self._state == "open":
                found = await self.store.list_executions(
                    workflow_id=workflow_id, status=status, since=since, until=until
                )
                return Expected.ok(found)
        summaries = []
        for execution in self._executions.values():
            started = execution.created_at
            if (
                (workflow_id is None or execution.spec.workflow_id == workflow_id)
                and (status is None or execution.status.value == status)
                and (since is None or started >= since)
                and (until is None or started < until)
            ):
                summaries.append(
                    {
                        "execution_id": execution.id,
                        "workflow_id": execution.spec.workflow_id,
                        "status": execution.status.value,
                        "created_at": started,
                    }
                )
        return Expected.ok(summaries)

    def status_now(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """`get_workflow_status` without the checkpoint; call it on the engine's loop."""
        found = self._find(execution_id)
        if not found:
            return Expected.fail(found.error())
        return Expected.ok(found.value().status_dict())

    async def get_workflow_results(
        self, execution_id: str
    ) -> Expected[dict[str, Any], PluginError]:
        """The results dictionary of a finished execution. Checkpoint.

        ``InvalidState`` while the execution is still pending or running.
        """
        await anyio.lowlevel.checkpoint()
        found = self._find(execution_id)
        if not found:
            if self._store_failure is not None:  # the store may know it, but cannot be read
                return Expected.fail(self._store_failure)
            row = await self._stored(execution_id)
            if row is None:
                return Expected.fail(found.error())
            if row["finished_at"] is None:
                return Expected.fail(
                    PluginErrorCode.InvalidState,
                    f"stored execution {execution_id!r} has not finished ({row['status']}): "
                    "resume it with resume_workflow",
                )
            assert self.store is not None
            return Expected.ok(stored_results(row, self.store))
        execution = found.value()
        if not execution.finished:
            return Expected.fail(
                PluginErrorCode.InvalidState,
                f"execution {execution_id!r} has not finished yet ({execution.status.value})",
            )
        return Expected.ok(execution.results_dict())

    def list_executions(self) -> list[str]:
        """Ids of the executions still known (running ones and the retained finished ones)."""
        return list(self._executions)

    def events(self, execution_id: str | None = None, *, buffer: int | None = None) -> EventStream:
        """Subscribe to events: of every execution, or of `execution_id` only.

        The stream receives events from the moment this returns (a stream for an
        execution that has already finished, or is unknown, is empty); iterate it with
        ``async for``. See
        `EventStream` for when it ends and what a full buffer does.
        """
        stream = self._hub.subscribe(execution_id, buffer or self.event_buffer)
        if execution_id is not None:
            execution = self._executions.get(execution_id)
            if execution is None or execution.finished:
                stream._finish()  # no events will come: the stream is empty and ended
        return stream

    # -- internals -------------------------------------------------------------------

    def _find_live(self, execution_id: str) -> Expected[Execution, PluginError]:
        """A known execution that has not finished and is not being cancelled."""
        found = self._find(execution_id)
        if not found:
            return found
        execution = found.value()
        if execution.finished:
            return Expected.fail(
                PluginErrorCode.InvalidState,
                f"execution {execution_id!r} has already finished ({execution.status.value})",
            )
        if execution.cancel_requested:
            return Expected.fail(
                PluginErrorCode.InvalidState,
                f"execution {execution_id!r} is already being cancelled",
            )
        return found

    def _find(self, execution_id: str) -> Expected[Execution, PluginError]:
        check_id("execution_id", execution_id)
        execution = self._executions.get(execution_id)
        if execution is None:
            return Expected.fail(PluginErrorCode.NotFound, f"no execution with id {execution_id!r}")
        return Expected.ok(execution)

    def _execution_finished(self, execution: Execution) -> None:
        self._finished[execution.id] = None
        while len(self._finished) > self.retention:
            forgotten, _ = self._finished.popitem(last=False)
            del self._executions[forgotten]

    def _debug_logging(self) -> bool:
        return wants_debug("qtforge.engine")

    async def _ensure_initialized(self, plugin_id: str, plugin: object) -> None:
        """Run the plugin's ``initialize()`` hook once, before its first step."""
        key = id(plugin)
        if key in self._initialized:
            return
        lock = self._init_locks.setdefault(key, anyio.Lock())
        async with lock:
            if key in self._initialized:
                return
            hook = getattr(plugin, "initialize", None)
            if callable(hook):
                try:
                    await _call_hook(hook, self._thread_limiter)
                except Exception as exc:
                    raise PluginError(
                        PluginErrorCode.InitializationFailed,
                        f"plugin {plugin_id!r} failed to initialize: {type(exc).__name__}: {exc}",
                        repr(exc),
                    ) from exc
            self._initialized[key] = plugin

    async def _shutdown_plugins(self) -> None:
        for plugin in reversed(list(self._initialized.values())):
            hook = getattr(plugin, "shutdown", None)
            if not callable(hook):
                continue
            with anyio.move_on_after(_SHUTDOWN_GRACE) as scope:
                try:
                    await _call_hook(hook, self._thread_limiter)
                except Exception:
                    self._log.exception("plugin.shutdown_failed", plugin=repr(plugin))
            if scope.cancelled_caught:
                self._log.warning("plugin.shutdown_timed_out", plugin=repr(plugin))
        self._initialized.clear()


async def _call_hook(hook: Any, limiter: anyio.CapacityLimiter) -> None:
    if inspect.iscoroutinefunction(hook):
        await hook()
        return
    outcome = await anyio.to_thread.run_sync(hook, limiter=limiter)
    if inspect.isawaitable(outcome):
        await outcome
