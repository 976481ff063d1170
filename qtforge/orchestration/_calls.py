"""How an execution calls its steps' plugin methods.

Resolution of ``(plugin_id, method_name)`` (cached per step and per method), the
plugin's one-time ``initialize()``, binding the step's inputs, and where the call runs:
on the event loop, in a worker thread (see ``_threads.py``), or on a named executor
(see ``_executors.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._binding import Binder, resolve
from ._context import CancelFlag, StepContext
from ._executors import StepCall
from ._spec import StepSpec, WorkflowSpec
from ._threads import run_in_thread

if TYPE_CHECKING:
    from ._engine import AsyncPluginOrchestrator

__all__ = ["Resolved", "StepCalls"]

Resolved = tuple[object, Callable[..., Any], Binder]


class StepCalls:
    """Builds the awaitable that runs one attempt of a step of one execution."""

    def __init__(
        self,
        engine: AsyncPluginOrchestrator,
        spec: WorkflowSpec,
        execution_id: str,
        report: Callable[[int, float, str | None], None],
    ) -> None:
        self._engine = engine
        self._workflow_id = spec.workflow_id
        self._execution_id = execution_id
        self._report = report
        self._by_step: list[Resolved | None] = [None] * len(spec.steps)
        self._by_name: dict[tuple[str, str], Resolved] = {}

    def start(
        self, index: int, step: StepSpec, inputs: Mapping[str, Any], attempt: int
    ) -> Awaitable[Any] | Resolved:
        """The awaitable that runs the step's method once, or, if its plugin has not
        been initialized yet, the resolved method to initialize first."""
        resolved = self._by_step[index]
        if resolved is None:
            key = (step.plugin_id, step.method_name)
            resolved = self._by_name.get(key)
            if resolved is None:
                engine = self._engine
                resolved = resolve(engine.plugin_manager, engine._binders, *key)
                self._by_name[key] = resolved
            self._by_step[index] = resolved
        plugin, fn, binder = resolved
        if id(plugin) not in self._engine._initialized:
            return resolved
        flag = None if binder.is_async and not binder.wants_context else CancelFlag()
        context = None
        if binder.wants_context:
            assert flag is not None
            context = StepContext._for_attempt(
                execution_id=self._execution_id,
                workflow_id=self._workflow_id,
                step_id=step.step_id,
                attempt=attempt,
                inputs=inputs,
                report=lambda fraction, message: self._report(index, fraction, message),
                cancel=flag,
            )
        args, kwargs = binder.bind(inputs, context)
        executor = step.executor or self._engine.default_executor
        if executor is not None:  # a named executor runs the call (see _executors.py)
            return self._engine._executors.get(executor).run(
                StepCall(
                    fn=fn,
                    args=args,
                    kwargs=kwargs,
                    is_async=binder.is_async,
                    context=context,
                    workflow_id=self._workflow_id,
                    execution_id=self._execution_id,
                    step_id=step.step_id,
                    plugin_id=step.plugin_id,
                    method_name=step.method_name,
                    attempt=attempt,
                    timeout=step.timeout_seconds,
                    on_cancel=None if flag is None else flag.set,
                )
            )
        if binder.is_async:
            awaitable: Awaitable[Any] = fn(*args, **kwargs)
            return awaitable
        assert flag is not None
        return self._in_thread(fn, args, kwargs, flag)

    async def initialize_then_call(
        self,
        resolved: Resolved,
        index: int,
        step: StepSpec,
        inputs: Mapping[str, Any],
        attempt: int,
    ) -> Any:
        await self._engine._ensure_initialized(step.plugin_id, resolved[0])
        call = self.start(index, step, inputs, attempt)
        assert not isinstance(call, tuple)
        return await call

    async def _in_thread(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flag: CancelFlag,
    ) -> Any:
        result = await run_in_thread(fn, args, kwargs, self._engine._thread_limiter, flag.set)
        if inspect.isawaitable(result):  # a plain function that returned a coroutine
            return await result
        return result
