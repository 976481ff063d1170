"""The seed's mutable builders, `Workflow` and `WorkflowStep`.

They are friendly to build and edit; every assignment is checked at once, so a bad
value fails where it is written. `PluginOrchestrator.register_workflow` validates the
whole graph and keeps an immutable snapshot (see ``_spec.py``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypeAlias

import attrs

from .._plugins import PluginManager
from ._model import ExecutionMode

__all__ = [
    "Condition",
    "RetryPredicate",
    "Workflow",
    "WorkflowStep",
    "create_workflow",
    "create_workflow_step",
]

Condition: TypeAlias = (
    str | Callable[[Mapping[str, Any]], bool] | Callable[[Mapping[str, Any]], Awaitable[bool]]
)
"""A step condition: an expression over the input keys, or a (sync or async) callable."""

RetryPredicate: TypeAlias = Callable[[Exception], bool]
"""Decides whether a failed attempt may be retried, given the error it raised."""


def _text(field: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, str):
            raise TypeError(f"{field} must be a str, not {type(value).__name__}")

    return check


def _number(
    field: str, *, minimum: float = 0.0, optional: bool = False, integer: bool = False
) -> Callable[[Any, Any, Any], None]:
    kind = "an int" if integer else "a number"

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            none = " or None" if optional else ""
            raise TypeError(f"{field} must be {kind}{none}, not {type(value).__name__}")
        if not value >= minimum:  # also rejects NaN
            raise ValueError(f"{field} must be >= {minimum:g}, got {value!r}")

    return check


def _to_parameters(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"parameters must be a mapping of str keys, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"parameters keys must be str, got {key!r}")
    return dict(value)


def _to_dependencies(value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | set | frozenset):
        raise TypeError(f"dependencies must be a list of step ids, not {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"dependencies must hold step ids (str), got {item!r}")
    return list(value)


def _check_condition(_instance: Any, _attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, str) and not callable(value):
        raise TypeError(
            "condition must be an expression string, a callable or None, "
            f"not {type(value).__name__}"
        )


def _check_bool(field: str) -> Callable[[Any, Any, Any], None]:
    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"{field} must be a bool, not {type(value).__name__}")

    return check


def _check_retry_on(_instance: Any, _attribute: Any, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"retry_on must be a callable or None, not {type(value).__name__}")


def _check_executor(_instance: Any, _attribute: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"executor must be a str or None, not {type(value).__name__}")
    if not value:
        raise ValueError("executor must not be empty (use None for the orchestrator's default)")


@attrs.define(eq=True, repr=True)
class WorkflowStep:
    """One step: call ``method_name`` on the plugin ``plugin_id``.

    Times are in milliseconds, as in QtForge. Every field can be assigned after
    construction; a value of the wrong type raises `TypeError`, an out-of-range value
    `ValueError`, both naming the field.

    Attributes:
        parameters: Keyword arguments for the method; they win over upstream data.
        dependencies: Ids of the steps that must finish first.
        timeout: Bound on each attempt, in ms (``0`` or ``None``: no bound).
        max_retries: Extra attempts after a failure.
        retry_delay: Wait before the first retry, in ms.
        retry_backoff: Factor applied to the wait after each retry.
        retry_max_delay: Cap on the wait between attempts, in ms.
        retry_jitter: Fraction (0..1) of each wait that is randomised away.
        retry_on: Decides whether an error may be retried (default: any ``Exception``).
        critical: Whether this step's failure fails the whole workflow.
        condition: Run the step only if this holds (see `Condition`).
        name: A human-readable name.
        description: What the step does.
        executor: Name of the executor that runs the step's method (``"async"``,
            ``"thread"``, ``"process"``, ``"dask"`` or one given to the orchestrator);
            ``None`` uses the orchestrator's ``default_executor`` (see `qtforge.executors`).
    """

    step_id: str = attrs.field(validator=_text("step_id"))
    plugin_id: str = attrs.field(validator=_text("plugin_id"))
    method_name: str = attrs.field(validator=_text("method_name"))
    parameters: dict[str, Any] = attrs.field(kw_only=True, factory=dict, converter=_to_parameters)
    dependencies: list[str] = attrs.field(kw_only=True, factory=list, converter=_to_dependencies)
    timeout: float | None = attrs.field(
        kw_only=True, default=60_000, validator=_number("timeout", optional=True)
    )
    max_retries: int = attrs.field(
        kw_only=True, default=0, validator=_number("max_retries", integer=True)
    )
    retry_delay: float = attrs.field(kw_only=True, default=1_000, validator=_number("retry_delay"))
    retry_backoff: float = attrs.field(
        kw_only=True, default=2.0, validator=_number("retry_backoff", minimum=1.0)
    )
    retry_max_delay: float = attrs.field(
        kw_only=True, default=60_000, validator=_number("retry_max_delay")
    )
    retry_jitter: float = attrs.field(kw_only=True, default=0.1, validator=_number("retry_jitter"))
    retry_on: RetryPredicate | None = attrs.field(
        kw_only=True, default=None, validator=_check_retry_on
    )
    critical: bool = attrs.field(kw_only=True, default=True, validator=_check_bool("critical"))
    condition: Condition | None = attrs.field(
        kw_only=True, default=None, validator=_check_condition
    )
    name: str = attrs.field(kw_only=True, default="", validator=_text("name"))
    description: str = attrs.field(kw_only=True, default="", validator=_text("description"))
    executor: str | None = attrs.field(kw_only=True, default=None, validator=_check_executor)

    @retry_jitter.validator
    def _check_jitter(self, _attribute: Any, value: float) -> None:
        if value > 1:
            raise ValueError(f"retry_jitter must be between 0 and 1, got {value!r}")


class Workflow:
    """A named graph of steps, built with chainable setters.

    Args:
        workflow_id: Unique id the workflow is registered and executed under.
        name: A human-readable name.
    """

    __slots__ = (
        "_description",
        "_execution_mode",
        "_name",
        "_rollbacks",
        "_steps",
        "_timeout",
        "_workflow_id",
    )

    def __init__(self, workflow_id: str, name: str = "") -> None:
        _text("workflow_id")(None, None, workflow_id)
        _text("name")(None, None, name)
        self._workflow_id = workflow_id
        self._name = name
        self._description = ""
        self._execution_mode = ExecutionMode.Sequential
        self._timeout: float | None = None
        self._steps: list[WorkflowStep] = []
        self._rollbacks: dict[str, WorkflowStep] = {}

    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    @property
    def id(self) -> str:
        """Alias of `workflow_id`."""
        return self._workflow_id

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def execution_mode(self) -> ExecutionMode:
        return self._execution_mode

    @property
    def timeout(self) -> float | None:
        """The whole execution's deadline in ms, or ``None`` for none."""
        return self._timeout

    @property
    def steps(self) -> list[WorkflowStep]:
        """The steps in ``add_step`` order (a new list; the steps themselves are shared)."""
        return list(self._steps)

    def set_name(self, name: str) -> Self:
        _text("name")(None, None, name)
        self._name = name
        return self

    def set_description(self, description: str) -> Self:
        _text("description")(None, None, description)
        self._description = description
        return self

    def set_execution_mode(self, mode: ExecutionMode) -> Self:
        if not isinstance(mode, ExecutionMode):
            raise TypeError(f"mode must be an ExecutionMode, not {type(mode).__name__}")
        self._execution_mode = mode
        return self

    def set_timeout(self, timeout: float | None) -> Self:
        """Bound the whole execution to `timeout` ms (``0`` or ``None``: no bound)."""
        _number("timeout", optional=True)(None, None, timeout)
        self._timeout = timeout or None
        return self

    def add_step(self, step: WorkflowStep) -> Self:
        """Append `step`; later edits to `step` still count until registration."""
        if not isinstance(step, WorkflowStep):
            raise TypeError(f"step must be a WorkflowStep, not {type(step).__name__}")
        self._steps.append(step)
        return self

    def remove_step(self, step_id: str) -> bool:
        """Remove the step(s) with `step_id`, and its rollback step; ``True`` if any
        step was removed."""
        kept = [step for step in self._steps if step.step_id != step_id]
        removed = len(kept) != len(self._steps)
        self._steps = kept
        if removed:
            self._rollbacks.pop(step_id, None)
        return removed

    def add_rollback_step(self, step_id: str, rollback_step: WorkflowStep) -> Self:
        """Compensate step `step_id` with `rollback_step` (QtForge's name).

        If the execution fails (a critical step failed, or the workflow timed out) or is
        cancelled, the rollback steps of the steps that completed run, latest completion
        first, each with its own timeout and retries; see the README, "Compensation".
        A rollback step's ``step_id`` is only its name in events; its ``dependencies``
        and ``condition`` must be empty. Replaces an earlier rollback of `step_id`.
        """
        _text("step_id")(None, None, step_id)
        if not isinstance(rollback_step, WorkflowStep):
            raise TypeError(
                f"rollback_step must be a WorkflowStep, not {type(rollback_step).__name__}"
            )
        self._rollbacks[step_id] = rollback_step
        return self

    @property
    def rollback_steps(self) -> dict[str, WorkflowStep]:
        """Step id -> its rollback step (a new dict; the steps themselves are shared)."""
        return dict(self._rollbacks)

    def get_step(self, step_id: str) -> WorkflowStep | None:
        """The step with `step_id`, or ``None``."""
        return next((step for step in self._steps if step.step_id == step_id), None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Workflow):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable and equal by content

    def _fields(self) -> tuple[object, ...]:
        return (
            self._workflow_id,
            self._name,
            self._description,
            self._execution_mode,
            self._timeout,
            self._steps,
            self._rollbacks,
        )

    def __repr__(self) -> str:
        return (
            f"Workflow({self._workflow_id!r}, {self._name!r}, mode={self._execution_mode.name}, "
            f"steps={[step.step_id for step in self._steps]!r})"
        )

    # -- workflow files: thin shells over _files.py, imported on first use ------------

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, plugin_manager: PluginManager | None = None
    ) -> Workflow:
        """Load a workflow file: ``.yaml`` / ``.yml``, ``.toml`` or ``.json``.

        The file holds the fields of `Workflow` and `WorkflowStep`, steps spelling
        ``step_id``, ``plugin_id`` and ``method_name`` as ``id``, ``plugin``, ``method``
        (the README shows one). Loading runs no code from the file. With
        `plugin_manager`, the file's ``plugins`` are loaded into it and every step's
        plugin and method must exist there.

        Raises:
            WorkflowFileError: Every problem found, each naming the file, the line (YAML
                and JSON) and the field.
        """
        from ._files import load_workflow

        return load_workflow(path, plugin_manager)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, plugin_manager: PluginManager | None = None
    ) -> Workflow:
        """Build a workflow from the parsed contents of a workflow file (see `from_file`).

        Raises:
            WorkflowFileError: Every problem found, each naming its field.
        """
        from ._files import workflow_from_data

        return workflow_from_data(data, plugin_manager)

    def to_dict(self) -> dict[str, Any]:
        """This workflow as a workflow file's contents; `from_dict` gives back an equal one.

        Fields left at their defaults are omitted.

        Raises:
            ValueError: A step holds code (a callable ``condition``, a ``retry_on``) or a
                parameter that is not plain data, which no file can hold.
        """
        from ._files import workflow_to_dict

        return workflow_to_dict(self)

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write this workflow to a ``.yaml``, ``.yml`` or ``.json`` file (see `to_dict`)."""
        from ._files import save_workflow

        save_workflow(self, path)


def create_workflow(workflow_id: str, name: str = "") -> Workflow:
    """Same as ``Workflow(workflow_id, name)``."""
    return Workflow(workflow_id, name)


def create_workflow_step(step_id: str, plugin_id: str, method_name: str) -> WorkflowStep:
    """Same as ``WorkflowStep(step_id, plugin_id, method_name)``."""
    return WorkflowStep(step_id, plugin_id, method_name)
