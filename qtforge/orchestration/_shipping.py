"""Sending a step call to another process, and its outcome back.

The process and Dask executors never hand the plugin's method to their workers
directly. They pickle one envelope, ``(method, args, kwargs, ...)``, here in the
engine (so that whatever cannot be pickled fails the step at once, naming the plugin
or argument at fault), and the worker runs `run_shipped` on the bytes: it unpickles
the envelope itself, so a plugin whose module the worker cannot import gives a clear
step error instead of a task that never resolves (the Dask failure mode), and it
sends back one pickled outcome, never an exception the transport would have to carry::

    ("ok", result)
    ("raised", pickled exception or None, type name, message, remote traceback)
    ("unloadable", "ModuleNotFoundError: ...")       the envelope could not be unpickled
    ("unpicklable", type name, "TypeError: ...")     the result could not be pickled

A `StepContext` argument travels as a plain copy and becomes a fresh context in the worker:
the same ids, attempt and inputs, but progress reports stay in the worker and
`StepContext.cancelled` never turns true there (a cancelled call is killed or
abandoned instead).
"""

from __future__ import annotations

import inspect
import pickle
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from .._errors import PluginError, PluginErrorCode
from ._context import StepContext
from ._executors import StepCall, run_coroutine

__all__ = ["RemoteTraceback", "pack", "run_shipped", "unpack"]

Dumps = Callable[[Any], bytes]


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker; the error's ``__cause__``."""

    def __str__(self) -> str:
        return f"\n\nin the worker:\n{self.args[0]}"


@attrs.frozen
class _ContextCopy:
    execution_id: str
    workflow_id: str
    step_id: str
    attempt: int
    inputs: dict[str, Any]

    def build(self) -> StepContext:
        return StepContext(
            execution_id=self.execution_id,
            workflow_id=self.workflow_id,
            step_id=self.step_id,
            attempt=self.attempt,
            inputs=self.inputs,
        )


# -- in the engine ---------------------------------------------------------------------


def pack(call: StepCall, dumps: Dumps, executor: str) -> bytes:
    """The envelope of `call`, pickled with `dumps` (``pickle.dumps`` or cloudpickle's).

    Raises:
        PluginError: ``InvalidConfiguration`` if the plugin or its method cannot be
            pickled, ``InvalidParameters`` if an argument cannot; the message names it.
    """
    args, kwargs = call.args, call.kwargs
    context = call.context
    if context is not None:
        copied = _ContextCopy(
            context.execution_id,
            context.workflow_id,
            context.step_id,
            context.attempt,
            dict(context.inputs),
        )
        args = tuple(copied if value is context else value for value in args)
        kwargs = {name: copied if value is context else value for name, value in kwargs.items()}
    cloud = dumps is not pickle.dumps
    envelope = (call.fn, args, kwargs, call.is_async, cloud)
    try:
        return dumps(envelope)
    except Exception as exc:
        raise _unpicklable(call, args, kwargs, dumps, executor, exc) from None


def _kind(value: object) -> str:
    cls = type(value)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return f"a {name}"


def _suspects(
    call: StepCall, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Iterator[tuple[str, object, PluginErrorCode]]:
    """The parts of a call that may fail to pickle, most specific first."""
    plugin = getattr(call.fn, "__self__", None)
    if plugin is not None:
        yield f"its plugin {call.plugin_id!r}", plugin, PluginErrorCode.InvalidConfiguration
    yield (
        f"its method {call.plugin_id}.{call.method_name}",
        call.fn,
        PluginErrorCode.InvalidConfiguration,
    )
    named = [(f"positional argument {i}", value) for i, value in enumerate(args)]
    named += [(f"argument {name!r}", value) for name, value in kwargs.items()]
    for label, value in named:
        if isinstance(value, dict):
            for key, item in value.items():
                yield f"{label}, key {key!r}", item, PluginErrorCode.InvalidParameters
        yield label, value, PluginErrorCode.InvalidParameters


def _unpicklable(
    call: StepCall,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    dumps: Dumps,
    executor: str,
    error: Exception,
) -> PluginError:
    """The error for a call that could not be pickled, naming the part at fault."""
    for what, value, code in _suspects(call, args, kwargs):
        try:
            dumps(value)
        except Exception as exc:
            return PluginError(
                code,
                f"{call.where}: the {executor} executor cannot send {what} ({_kind(value)}) "
                f"to its workers: it could not be pickled: {type(exc).__name__}: {exc}",
                repr(exc),
            )
    return PluginError(
        PluginErrorCode.InvalidParameters,
        f"{call.where}: the {executor} executor could not pickle the call: "
        f"{type(error).__name__}: {error}",
        repr(error),
    )


def unpack(reply: bytes, call: StepCall, executor: str) -> Any:
    """The result a worker sent back for `call`; raises the error it sent instead."""
    try:
        outcome = pickle.loads(reply)
    except Exception as exc:
        raise PluginError(
            PluginErrorCode.ExecutionFailed,
            f"{call.where}: the {executor} executor could not read the outcome its worker "
            f"sent back: {type(exc).__name__}: {exc}",
            repr(exc),
        ) from None
    tag = outcome[0]
    if tag == "ok":
        return outcome[1]
    if tag == "raised":
        _, blob, name, message, remote_traceback = outcome
        error = None
        if blob is not None:
            try:
                error = pickle.loads(blob)
            except Exception:  # an exception class that cannot be rebuilt: report it as text
                error = None
        if isinstance(error, Exception):
            error.__cause__ = RemoteTraceback(remote_traceback)
            raise error
        raise PluginError(
            PluginErrorCode.ExecutionFailed,
            f"{call.where} raised {name}: {message}",
            remote_traceback,
        )
    if tag == "unloadable":
        raise PluginError(
            PluginErrorCode.ExecutionFailed,
            f"{call.where}: a {executor} worker could not load the step's plugin or arguments: "
            f"{outcome[1]} (every module they come from must be importable by the workers)",
        )
    assert tag == "unpicklable", outcome
    failure = PluginError(
        PluginErrorCode.ExecutionFailed,
        f"{call.where} returned a {outcome[1]}, which the {executor} executor cannot send "
        f"back: it could not be pickled: {outcome[2]}",
    )
    failure.non_retryable = True  # type: ignore[attr-defined]  # the same every attempt
    raise failure


# -- in the worker ---------------------------------------------------------------------


def run_shipped(payload: bytes) -> bytes:
    """Unpickle the envelope `payload`, run its call, and pickle the outcome (see above)."""
    try:
        fn, args, kwargs, is_async, cloud = pickle.loads(payload)
    except BaseException as exc:  # whatever it is, the engine must hear of it
        return pickle.dumps(("unloadable", f"{type(exc).__name__}: {exc}"))
    dumps = _cloud_dumps() if cloud else pickle.dumps
    args = tuple(value.build() if isinstance(value, _ContextCopy) else value for value in args)
    for name, value in kwargs.items():
        if isinstance(value, _ContextCopy):
            kwargs[name] = value.build()
    try:
        if is_async:
            result = run_coroutine(fn, args, kwargs)
        else:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):  # a plain function that returned a coroutine
                result = run_coroutine(_awaited, (result,), {})
    except BaseException as exc:  # SystemExit too: report it, never exit
        try:
            blob: bytes | None = dumps(exc)
        except Exception:
            blob = None
        return dumps(("raised", blob, type(exc).__name__, str(exc), traceback.format_exc()))
    try:
        return dumps(("ok", result))
    except Exception as exc:
        return dumps(("unpicklable", type(result).__name__, f"{type(exc).__name__}: {exc}"))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _cloud_dumps() -> Dumps:
    import cloudpickle

    dumps: Dumps = cloudpickle.dumps
    return dumps
