"""`PluginOrchestrator`: the seed's blocking API, a thin shell over the async engine.

One `AsyncPluginOrchestrator` is served on one background thread through anyio's
blocking portal, started on the first call that needs it. Every blocking call is one
portal round trip, so the facade is safe to use from many threads at once, including
threads that run their own event loop. The registry methods never touch the thread.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from functools import partial
from typing import Any, Self, TypeVar

import anyio
import sniffio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._errors import Expected, PluginError, PluginErrorCode
from .._plugins import PluginManager
from ._engine import AsyncPluginOrchestrator
from ._registry import WorkflowRegistry

__all__ = ["PluginOrchestrator", "create_orchestrator"]

T = TypeVar("T")


class _EngineThread:
    """The engine served on a background event loop, and how to stop it."""

    def __init__(self, engine: AsyncPluginOrchestrator, backend: str) -> None:
        self._engine = engine
        with ExitStack() as stack:
            self.portal = stack.enter_context(start_blocking_portal(backend, name="qtforge"))
            self._served, _ = self.portal.start_task(engine.serve, name="qtforge.serve")
            self.thread_id: int = self.portal.call(threading.get_ident)
            self._stack = stack.pop_all()
        self._closed = False

    def close(self) -> None:
        """Cancel what still runs, close the engine, and join the thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.portal.call(self._engine.shutdown)
            self._served.result()
        finally:
            self._stack.close()


class PluginOrchestrator(WorkflowRegistry):
    """The blocking orchestrator of the seed API.

    Args:
        plugin_manager: As for `AsyncPluginOrchestrator`.
        backend: The event loop the engine runs on: ``"asyncio"`` (default) or ``"trio"``.
        **options: The other `AsyncPluginOrchestrator` options (``max_concurrency``,
            ``thread_limit``, ``retention``, ``retry_on``, ``event_buffer``, ``seed``,
            ``executors``, ``default_executor``, ``store``).

    Call `close` (or use ``with``) when done. A script that does not still exits
    promptly: at interpreter exit, executions still running are cancelled and the
    engine's thread is stopped.

    Methods must not be called from inside the engine's own event loop (from an async
    plugin method, say): that would deadlock, so they raise `RuntimeError` there. Use the
    `AsyncPluginOrchestrator` API from async code instead.
    """

    def __init__(
        self,
        plugin_manager: PluginManager | None = None,
        *,
        backend: str = "asyncio",
        **options: Any,
    ) -> None:
        self._engine = AsyncPluginOrchestrator(plugin_manager, **options)
        # Share the engine's registry rather than wrap it: same methods, same state.
        self._specs = self._engine._specs
        self._registry_lock = self._engine._registry_lock
        self._backend = backend
        self._thread: _EngineThread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def plugin_manager(self) -> PluginManager:
        return self._engine.plugin_manager

    @property
    def engine(self) -> AsyncPluginOrchestrator:
        """The async engine behind this facade (it runs on the facade's own thread)."""
        return self._engine

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel running executions, run plugin shutdown hooks, stop the thread.

        Idempotent. Afterwards the registry still works, execution methods return
        ``InvalidState``.
        """
        if self._thread is not None:
            self._check_caller(self._thread)
        with self._start_lock:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            assert self._finalizer is not None
            self._finalizer.detach()
            _outside_trio(thread.close)

    def _running_thread(self, start: bool) -> _EngineThread | None:
        thread = self._thread
        if thread is not None or not start:
            return thread
        with self._start_lock:
            if self._thread is None and not self._closed:
                thread = _EngineThread(self._engine, self._backend)
                self._finalizer = weakref.finalize(self, thread.close)
                self._thread = thread
            return self._thread

    def _check_caller(self, thread: _EngineThread) -> None:
        if threading.get_ident() == thread.thread_id:
            raise RuntimeError(
                "PluginOrchestrator was called from its own event loop (for example from an "
                "async plugin method), which would deadlock; use AsyncPluginOrchestrator's "
                "coroutines (await orchestrator.engine.execute_workflow(...)) there instead"
            )

    def _call(
        self,
        execution_id: str | None,
        call: Callable[..., Any],
        *args: Any,
        start: bool = True,
    ) -> Any:
        """Run `call` on the engine's loop and wait for it: one portal round trip.

        Without an engine thread there are no executions, so a query about one answers
        ``NotFound`` without starting the thread.
        """
        if self._thread is not None:
            self._check_caller(self._thread)
        return _outside_trio(self._call_here, execution_id, call, args, start)

    def _call_here(
        self,
        execution_id: str | None,
        call: Callable[..., Any],
        args: tuple[Any, ...],
        start: bool,
    ) -> Any:
        thread = self._running_thread(start)
        if thread is None:
            if self._closed:
                return _closed()
            assert execution_id is not None
            return Expected.fail(self._engine._find(execution_id).error())
        return _PortalCall(call, args).run_in(thread.portal)

    # -- execution -------------------------------------------------------------------

    def execute_workflow(
        self,
        workflow_id: str,
        initial_data: Mapping[str, Any] | None = None,
        async_execution: bool = False,
    ) -> Expected[str, PluginError]:
        """Execute a registered workflow; returns the execution id.

        Blocks until the execution has finished unless ``async_execution=True``. A failed
        execution still returns its id: read the failure from status and results.
        Ctrl-C while blocked cancels the execution.
        """
        result: Expected[str, PluginError] = self._call(
            None, self._engine.execute_workflow, workflow_id, initial_data, async_execution
        )
        return result

    def cancel_workflow(self, execution_id: str) -> Expected[None, PluginError]:
        """Cancel a running execution (see `AsyncPluginOrchestrator.cancel_workflow`);
        with a store, one run by another process or interrupted too."""
        result: Expected[None, PluginError] = self._call(
            execution_id,
            self._engine.cancel_workflow,
            execution_id,
            start=self._engine.store is not None,
        )
        return result

    def pause_workflow(self, execution_id: str) -> Expected[None, PluginError]:
        """Pause a running execution (see `AsyncPluginOrchestrator.pause_workflow`);
        `resume_workflow` continues it."""
        result: Expected[None, PluginError] = self._call(
            execution_id, self._engine.pause_workflow, execution_id, start=False
        )
        return result

    def get_workflow_status(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """The execution's status dictionary, while it runs and after (with a store,
        of any stored execution too)."""
        if self._engine.store is not None:
            stored: Expected[dict[str, Any], PluginError] = self._call(
                execution_id, self._engine.get_workflow_status, execution_id
            )
            return stored
        result: Expected[dict[str, Any], PluginError] = self._call(
            execution_id, self._engine.status_now, execution_id, start=False
        )
        return result

    def resume_workflow(
        self, execution_id: str, async_execution: bool = False
    ) -> Expected[str, PluginError]:
        """Continue a paused execution, or an interrupted stored one (see
        `AsyncPluginOrchestrator.resume_workflow`); returns its execution id."""
        result: Expected[str, PluginError] = self._call(
            None, self._engine.resume_workflow, execution_id, async_execution
        )
        return result

    def get_workflow_results(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """The results of a finished execution; ``InvalidState`` while it runs."""
        result: Expected[dict[str, Any], PluginError] = self._call(
            execution_id,
            self._engine.get_workflow_results,
            execution_id,
            start=self._engine.store is not None,
        )
        return result

    def wait_workflow(self, execution_id: str) -> Expected[dict[str, Any], PluginError]:
        """Block until an execution (started with ``async_execution=True``) finishes;
        returns its results. Ctrl-C stops waiting, not the execution."""
        result: Expected[dict[str, Any], PluginError] = self._call(
            execution_id, self._engine.wait_workflow, execution_id, start=False
        )
        return result

    def list_executions(
        self,
        *,
        workflow_id: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[str]:
        """Ids of running and retained finished executions, oldest first; with a store,
        of every stored execution. Filters: workflow id, status, and start time
        (``since`` inclusive, ``until`` exclusive, seconds since the epoch)."""
        store = self._engine.store is not None
        filtered = (workflow_id, status, since, until) != (None, None, None, None)
        if not store and not filtered:
            if self._running_thread(start=False) is None:
                return []
            ids: list[str] = self._call(None, self._engine.list_executions)
            return ids
        if not store and self._running_thread(start=False) is None:
            return []
        found: Expected[list[dict[str, Any]], PluginError] = self._call(
            None,
            partial(
                self._engine.find_executions,
                workflow_id=workflow_id,
                status=status,
                since=since,
                until=until,
            ),
        )
        if not found:
            raise found.error()
        return [summary["execution_id"] for summary in found.value()]


class _PortalCall:
    """One facade call run on the engine's loop, cancelled when the caller is interrupted.

    Ctrl-C may land at any bytecode in the calling thread, including between the
    portal spawning the call and handing back its future; the call then still learns
    that it is cancelled, and the caller waits until it has really ended, so an
    interrupted blocking execute leaves its execution ``cancelled``, not running.
    """

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._call = call
        self._args = args
        self._started = threading.Event()
        self._ended = threading.Event()
        self._cancelled = False
        self._scope: anyio.CancelScope | None = None

    def run_in(self, portal: BlockingPortal) -> Any:
        future: Future[Any] | None = None
        try:
            future = portal.start_task_soon(self._run)
            return future.result()
        except RuntimeError:
            if future is None:  # the portal has stopped: close() won the race
                return _closed()
            raise
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the portal is already gone
                portal.call(self._cancel)
            if self._started.is_set():
                self._ended.wait()
            raise

    async def _run(self) -> Any:
        try:
            with anyio.CancelScope() as self._scope:
                self._started.set()
                if self._cancelled:
                    self._scope.cancel()
                result = self._call(*self._args)
                return await result if inspect.isawaitable(result) else result
        finally:
            self._ended.set()

    def _cancel(self) -> None:
        self._cancelled = True
        if self._scope is not None:
            self._scope.cancel()


def _closed() -> Expected[Any, PluginError]:
    return Expected.fail(PluginErrorCode.InvalidState, "this PluginOrchestrator has been closed")


def _outside_trio(fn: Callable[..., T], *args: Any) -> T:
    """Call `fn` here, or in a short-lived thread when this thread runs trio.

    The portal reaches its loop through ``from_thread`` calls, which trio refuses to make
    from inside a trio run (and a trio-backend portal started there never stops). A
    blocking facade call from a trio program blocks that program either way.
    """
    try:
        inside_trio = sniffio.current_async_library() == "trio"
    except sniffio.AsyncLibraryNotFoundError:
        inside_trio = False
    if not inside_trio:
        return fn(*args)
    with ThreadPoolExecutor(1, thread_name_prefix="qtforge-call") as pool:
        return pool.submit(fn, *args).result()


def create_orchestrator(
    plugin_manager: PluginManager | None = None, **options: Any
) -> PluginOrchestrator:
    """Same as ``PluginOrchestrator(plugin_manager, **options)``."""
    return PluginOrchestrator(plugin_manager, **options)
