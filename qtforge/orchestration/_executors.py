"""Executors: where a step's method runs.

The engine hands every attempt of a step that names an executor (``step.executor``, or
the orchestrator's ``default_executor``) to that executor as a `StepCall`, and awaits
`Executor.run`::

    Executor                 the interface
     ├── AsyncExecutor       on the engine's event loop
     ├── ThreadExecutor      in a worker thread
     ├── ProcessExecutor     in a worker process        (_executor_process.py)
     └── DaskExecutor        on a Dask cluster          (_executor_dask.py)

Steps that name no executor, under an orchestrator without a default, take the
engine's own path, which is the same as ``"async"`` for ``async def`` methods and
``"thread"`` for plain ones, minus the hop through this interface.

The engine alone enforces timeouts and cancellation, and the same way for every
executor: it cancels the task awaiting `Executor.run`. An executor only has to stop
waiting at once and let the cancellation through, stopping the work if it can (the
process executor kills the worker process) or leaving it to finish unobserved if it
cannot (a thread, a running Dask task); `Executor.interrupts_running` says which. So
retries, statuses, events and results are the same whatever runs the step.
"""

from __future__ import annotations

import abc
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import anyio
import anyio.lowlevel
import attrs
import sniffio

from .._errors import PluginError, PluginErrorCode
from ._context import StepContext
from ._logging import get_logger
from ._threads import run_in_thread

__all__ = [
    "BUILTIN_EXECUTORS",
    "AsyncExecutor",
    "Executor",
    "ExecutorSet",
    "StepCall",
    "ThreadExecutor",
    "run_coroutine",
]

BUILTIN_EXECUTORS = ("async", "thread", "process", "dask")
"""Names every orchestrator knows; each is made on first use unless one is given."""

_CLOSE_GRACE = 10.0  # seconds each executor's aclose() may take when the engine closes


@attrs.frozen(kw_only=True)
class StepCall:
    """One attempt of one step, as an `Executor` receives it.

    Attributes:
        fn: The plugin's method (or its ``execute_command``), bound to the plugin.
        args: Positional arguments bound from the step's input mapping.
        kwargs: Keyword arguments bound from the step's input mapping.
        is_async: `fn` is a coroutine function.
        context: The `StepContext` among the arguments, if the method takes one.
        workflow_id: The workflow being executed.
        execution_id: The execution the step belongs to.
        step_id: The step.
        plugin_id: The plugin `fn` belongs to.
        method_name: The method the step calls.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
        timeout: This attempt's bound in seconds, or ``None``. The engine enforces it by
            cancelling `Executor.run`; it is here for executors that can pass it on.
        on_cancel: Call it when the attempt is cancelled while it runs: it turns the
            step's `StepContext.cancelled` true, for code that polls it.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    is_async: bool
    context: StepContext | None = None
    workflow_id: str
    execution_id: str
    step_id: str
    plugin_id: str
    method_name: str
    attempt: int
    timeout: float | None = None
    on_cancel: Callable[[], None] | None = None

    @property
    def where(self) -> str:
        """The call as error messages name it: ``step 'id': plugin.method()``."""
        return f"step {self.step_id!r}: {self.plugin_id}.{self.method_name}()"

    @property
    def idempotency_key(self) -> str:
        """``"<execution_id>/<step_id>"``: the same for every attempt of the step."""
        return f"{self.execution_id}/{self.step_id}"

    def cancelled(self) -> None:
        """Tell the step's code that this attempt was cancelled (see `on_cancel`)."""
        if self.on_cancel is not None:
            self.on_cancel()


class Executor(abc.ABC):
    """Runs step calls somewhere: subclass it to run them somewhere new.

    An orchestrator calls `run` from its event loop, for every attempt of every step
    routed to the executor, often many at once; and `aclose` once, when it closes.
    The executor may be used again after `aclose` (it starts what it needs anew).

    Attributes:
        interrupts_running: Whether cancelling a call that is already running really
            stops it (``True``), or only stops the engine waiting for it, the call
            finishing on its own with its result discarded (``False``).
    """

    interrupts_running: ClassVar[bool] = True

    @abc.abstractmethod
    async def run(self, call: StepCall) -> Any:
        """Run `call` once; return its result or raise its error.

        Checkpoint. It must never block the event loop. When the task awaiting it is
        cancelled (the attempt timed out, or the execution was cancelled), it must stop
        waiting at once, stop the work if it can, call ``call.cancelled()``, and let
        the cancellation propagate.

        Raises:
            Exception: What the step's method raised, or a `PluginError` saying why the
                executor could not run it.
        """

    async def aclose(self) -> None:  # noqa: B027  # optional hook, empty by default
        """Release what the executor started (threads, processes, clusters).

        Checkpoint; the engine shields it from cancellation when it closes.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncExecutor(Executor):
    """Runs calls on the engine's event loop.

    An ``async def`` method is awaited there, as the engine does by default. A plain
    function is called on the loop itself, without the hop to a worker thread: choose
    it only for functions that return at once, because nothing else runs on the loop
    while one runs, and a timeout or cancellation can only take effect after it returns.
    """

    async def run(self, call: StepCall) -> Any:
        if call.is_async:
            return await call.fn(*call.args, **call.kwargs)
        await anyio.lowlevel.checkpoint()
        result = call.fn(*call.args, **call.kwargs)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            return await result
        return result


class ThreadExecutor(Executor):
    """Runs calls in worker threads.

    A plain function is called in the thread; an ``async def`` method runs there on an
    asyncio event loop of its own, for async code that blocks now and then (or that
    needs asyncio under a trio engine). A thread cannot be killed: a call timed out or
    cancelled is abandoned, its `StepContext.cancelled` turns true, and its result is
    discarded when it ends; it keeps its thread token until then.

    Args:
        max_threads: Most calls of this executor running at once. The orchestrator's
            built-in ``"thread"`` executor shares the orchestrator's ``thread_limit``
            with its default path instead.
    """

    interrupts_running = False

    def __init__(self, max_threads: int = 32) -> None:
        if isinstance(max_threads, bool) or not isinstance(max_threads, int) or max_threads < 1:
            raise ValueError(f"max_threads must be a positive int, got {max_threads!r}")
        self.max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    @classmethod
    def _sharing(cls, limiter: anyio.CapacityLimiter) -> ThreadExecutor:
        executor = cls(max(1, int(limiter.total_tokens)))
        executor._limiter = limiter
        return executor

    async def run(self, call: StepCall) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_threads)
        fn, args, kwargs = call.fn, call.args, call.kwargs
        if call.is_async:
            fn, args, kwargs = run_coroutine, (call.fn, args, kwargs), {}
        result = await run_in_thread(fn, args, kwargs, self._limiter, call.cancelled)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            return await result
        return result


def run_coroutine(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run ``fn(*args, **kwargs)`` to its end on a new asyncio event loop, in this worker
    thread (or process).

    Asyncio whatever the engine runs on: asyncio-only libraries then work under a trio
    engine too, trio need not be installed on remote workers, and a `StepContext` may
    report progress to a trio engine (trio refuses that call from inside another trio
    run). The context copied into a thread may still name the caller's event loop for
    sniffio, so that anyio would refuse to start one; here it is reset.
    """
    context = contextvars.copy_context()
    context.run(sniffio.current_async_library_cvar.set, None)
    return context.run(anyio.run, functools.partial(fn, *args, **kwargs))


class _Unknown(Executor):
    """Stands in for a name the orchestrator has no executor for: the step fails."""

    def __init__(self, name: str, known: list[str]) -> None:
        self._name = name
        self._known = known

    async def run(self, call: StepCall) -> Any:
        await anyio.lowlevel.checkpoint()
        raise PluginError(
            PluginErrorCode.InvalidConfiguration,
            f"{call.where} names executor {self._name!r}, which this orchestrator does not "
            f"have (it has: {', '.join(self._known)})",
        )


class ExecutorSet:
    """The named executors of one engine: the given ones, and the built-in ones made on
    first use (so that ``"dask"`` imports nothing until a step asks for it).

    Args:
        given: Executors by name; a name of `BUILTIN_EXECUTORS` replaces the built-in.
        default: The name used by steps that name none, or ``None`` for the engine's
            own path; checked here, kept by the engine (``default_executor``).

    Raises:
        TypeError: A name that is not a str, or an executor that is not an `Executor`.
        ValueError: An empty name, or a `default` that names no executor.
    """

    def __init__(self, given: Mapping[str, Executor] | None, default: str | None) -> None:
        if given is not None and not isinstance(given, Mapping):
            raise TypeError(f"executors must be a mapping, not {type(given).__name__}")
        for name, executor in (given or {}).items():
            if not isinstance(name, str):
                raise TypeError(f"executor names must be str, got {name!r}")
            if not name:
                raise ValueError("executor names must not be empty")
            if not isinstance(executor, Executor):
                raise TypeError(
                    f"executor {name!r} must be a qtforge.executors.Executor, "
                    f"not {type(executor).__name__}"
                )
        self._given: dict[str, Executor] = dict(given or {})
        self.names = sorted({*BUILTIN_EXECUTORS, *self._given})
        if default is not None and not isinstance(default, str):
            raise TypeError(f"default_executor must be a str or None, not {type(default).__name__}")
        if default is not None and default not in self.names:
            raise ValueError(
                f"default_executor {default!r} names no executor (known: {', '.join(self.names)})"
            )
        self._made: dict[str, Executor] = {}
        self._thread_limiter: anyio.CapacityLimiter | None = None
        self._log = get_logger("qtforge.engine")

    def open(self, thread_limiter: anyio.CapacityLimiter) -> None:
        """The engine is open; the built-in ``"thread"`` executor shares its limiter."""
        self._thread_limiter = thread_limiter

    def get(self, name: str) -> Executor:
        """The executor called `name` (one that fails every call if there is none)."""
        executor = self._given.get(name) or self._made.get(name)
        if executor is None:
            executor = self._made[name] = self._make(name)
        return executor

    def _make(self, name: str) -> Executor:
        if name == "async":
            return AsyncExecutor()
        if name == "thread":
            assert self._thread_limiter is not None, "the engine is not open"
            return ThreadExecutor._sharing(self._thread_limiter)
        if name == "process":
            from ._executor_process import ProcessExecutor

            return ProcessExecutor()
        if name == "dask":
            from ._executor_dask import DaskExecutor

            return DaskExecutor()
        return _Unknown(name, self.names)

    async def aclose(self) -> None:
        """Close every executor that was used or given, each bounded and shielded."""
        made, self._made = self._made, {}
        for name, executor in [*made.items(), *self._given.items()]:
            with anyio.move_on_after(_CLOSE_GRACE, shield=True) as scope:
                try:
                    await executor.aclose()
                except Exception:
                    self._log.exception("executor.close_failed", executor=name)
            if scope.cancelled_caught:
                self._log.warning("executor.close_timed_out", executor=name)
