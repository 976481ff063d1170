"""Registered workflows, by id: plain, thread-safe, and free of any event loop."""

from __future__ import annotations

import threading

from .._errors import Expected, PluginError, PluginErrorCode
from ._spec import WorkflowSpec, to_workflow, validate_workflow
from ._workflow import Workflow

__all__ = ["WorkflowRegistry", "check_id"]


def check_id(name: str, value: object) -> None:
    """Raise `TypeError` for an id that is not a string (a bug in the caller's code)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


class WorkflowRegistry:
    """The registry half of the orchestrator API; every method returns at once."""

    def __init__(self) -> None:
        self._specs: dict[str, WorkflowSpec] = {}
        self._registry_lock = threading.Lock()

    def register_workflow(self, workflow: Workflow) -> Expected[None, PluginError]:
        """Validate `workflow` and register an immutable snapshot of it.

        Later changes to `workflow` or its steps do not affect what was registered.

        Returns:
            Success, or the first problem found: ``AlreadyExists`` for a taken id, and
            the validation errors of `validate_workflow` (``InvalidConfiguration``,
            ``DependencyMissing``, ``CircularDependency``).
        """
        if not isinstance(workflow, Workflow):
            raise TypeError(f"workflow must be a Workflow, not {type(workflow).__name__}")
        validated = validate_workflow(workflow)
        if not validated:
            return Expected.fail(validated.error())
        spec = validated.value()
        with self._registry_lock:
            if spec.workflow_id in self._specs:
                return Expected.fail(
                    PluginErrorCode.AlreadyExists,
                    f"a workflow with id {spec.workflow_id!r} is already registered",
                )
            self._specs[spec.workflow_id] = spec
        return Expected.ok(None)

    def unregister_workflow(self, workflow_id: str) -> Expected[None, PluginError]:
        """Forget a workflow; executions already started are not affected."""
        check_id("workflow_id", workflow_id)
        with self._registry_lock:
            if self._specs.pop(workflow_id, None) is None:
                return Expected.fail(self._workflow_not_found(workflow_id))
        return Expected.ok(None)

    def has_workflow(self, workflow_id: str) -> bool:
        check_id("workflow_id", workflow_id)
        return workflow_id in self._specs

    def get_workflow(self, workflow_id: str) -> Expected[Workflow, PluginError]:
        """A copy of the registered workflow, as a fresh `Workflow` builder."""
        check_id("workflow_id", workflow_id)
        spec = self._specs.get(workflow_id)
        if spec is None:
            return Expected.fail(self._workflow_not_found(workflow_id))
        return Expected.ok(to_workflow(spec))

    def list_workflows(self) -> list[str]:
        """The registered workflow ids, in registration order."""
        return list(self._specs)

    def clear_workflows(self) -> None:
        """Unregister every workflow."""
        with self._registry_lock:
            self._specs.clear()

    def _workflow_not_found(self, workflow_id: str) -> PluginError:
        known = ", ".join(repr(name) for name in self._specs) or "none"
        return PluginError(
            PluginErrorCode.NotFound,
            f"no workflow with id {workflow_id!r} is registered (registered: {known})",
        )
