"""The seed's enumerations: how a workflow runs, and where each step stands."""

from __future__ import annotations

import enum

__all__ = ["ExecutionMode", "StepStatus"]


class ExecutionMode(enum.StrEnum):
    """How the steps of a workflow are scheduled."""

    Sequential = "sequential"
    """One step at a time, in dependency order (ties in ``add_step`` order)."""
    Parallel = "parallel"
    """Every step whose dependencies are done starts at once."""
    Conditional = "conditional"
    """As Parallel, and a join runs when at least one of its dependencies completed."""
    Pipeline = "pipeline"
    """As Parallel, and each step sees only its direct dependencies' output."""


class StepStatus(enum.StrEnum):
    """Where a step stands; the value is the string used in status dictionaries."""

    Pending = "pending"
    Running = "running"
    Retrying = "retrying"
    Completed = "completed"
    Failed = "failed"
    Skipped = "skipped"
    Cancelled = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {StepStatus.Completed, StepStatus.Failed, StepStatus.Skipped, StepStatus.Cancelled}
)
