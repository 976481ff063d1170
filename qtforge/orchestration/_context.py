"""`StepContext`: what a running step may know about itself and tell the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import anyio.from_thread
import anyio.lowlevel

from .._errors import PluginError, PluginErrorCode
from ._logging import get_logger

__all__ = ["CancelFlag", "StepContext"]


class CancelFlag:
    """Set once, from the event loop, when an attempt is timed out or cancelled."""

    __slots__ = ("is_set",)

    def __init__(self) -> None:
        self.is_set = False

    def set(self) -> None:
        self.is_set = True


class StepContext:
    """Passed to a plugin method that declares a ``StepContext`` (or ``context``) parameter.

    Attributes:
        execution_id: The execution this step belongs to.
        workflow_id: The workflow being executed.
        step_id: This step.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
        inputs: The step's full, read-only input mapping.
        progress: The fraction last given to `report_progress`.
    """

    __slots__ = (
        "_cancel",
        "_logger",
        "_loop_thread",
        "_report",
        "_token",
        "attempt",
        "execution_id",
        "inputs",
        "progress",
        "step_id",
        "workflow_id",
    )

    def __init__(
        self,
        *,
        execution_id: str,
        workflow_id: str,
        step_id: str,
        attempt: int = 1,
        inputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Build a context by hand, to unit-test a plugin method outside the engine."""
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.attempt = attempt
        self.inputs: Mapping[str, Any] = inputs if inputs is not None else {}
        self.progress = 0.0
        self._cancel = CancelFlag()
        self._report: Callable[[float, str | None], None] | None = None
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._loop_thread: int | None = None
        self._logger: Any = None

    @classmethod
    def _for_attempt(
        cls,
        *,
        execution_id: str,
        workflow_id: str,
        step_id: str,
        attempt: int,
        inputs: Mapping[str, Any],
        report: Callable[[float, str | None], None],
        cancel: CancelFlag,
    ) -> StepContext:
        """The engine's context for one attempt; call it on the engine's event loop."""
        context = cls(
            execution_id=execution_id,
            workflow_id=workflow_id,
            step_id=step_id,
            attempt=attempt,
            inputs=inputs,
        )
        context._report = report
        context._cancel = cancel
        context._token = anyio.lowlevel.current_token()
        context._loop_thread = threading.get_ident()
        return context

    @property
    def idempotency_key(self) -> str:
        """``"<execution_id>/<step_id>"``: the same for every attempt of this step."""
        return f"{self.execution_id}/{self.step_id}"

    @property
    def logger(self) -> Any:
        """A structlog logger bound to this execution, step and attempt."""
        if self._logger is None:
            self._logger = get_logger("qtforge.step").bind(
                workflow_id=self.workflow_id,
                execution_id=self.execution_id,
                step_id=self.step_id,
                attempt=self.attempt,
            )
        return self._logger

    @property
    def cancelled(self) -> bool:
        """True once this attempt timed out or was cancelled; poll it in long sync code."""
        return self._cancel.is_set

    def raise_if_cancelled(self) -> None:
        """Raise ``PluginError(OperationCancelled)`` if `cancelled` is true."""
        if self._cancel.is_set:
            raise PluginError(
                PluginErrorCode.OperationCancelled,
                f"step {self.step_id!r} of execution {self.execution_id!r} was cancelled",
            )

    def report_progress(self, fraction: float, message: str | None = None) -> None:
        """Tell the engine how far this step has got (0.0 to 1.0); see `progress`.

        Safe from the event loop and from the step's worker thread; from a thread it
        waits for the loop to take the report.
        """
        self.progress = fraction = min(1.0, max(0.0, float(fraction)))
        if self._report is None:  # a context built by hand
            return
        if threading.get_ident() == self._loop_thread:
            self._report(fraction, message)
        elif not self._cancel.is_set:
            anyio.from_thread.run_sync(self._report, fraction, message, token=self._token)

    def __repr__(self) -> str:
        return (
            f"<StepContext execution_id={self.execution_id!r} step_id={self.step_id!r} "
            f"attempt={self.attempt}>"
        )
