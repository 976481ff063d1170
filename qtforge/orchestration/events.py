"""Execution events, as yielded by ``AsyncPluginOrchestrator.events()``.

Every event has `kind`, `execution_id`, `workflow_id`, `step_id` (``None`` for
workflow-level events) and `timestamp` (seconds since the epoch), plus the fields of
its kind.
"""

from ._events import CompensationCompleted as CompensationCompleted
from ._events import CompensationFailed as CompensationFailed
from ._events import CompensationStarted as CompensationStarted
from ._events import Event as Event
from ._events import EventsDropped as EventsDropped
from ._events import EventStream as EventStream
from ._events import Progress as Progress
from ._events import StepCancelled as StepCancelled
from ._events import StepCompleted as StepCompleted
from ._events import StepFailed as StepFailed
from ._events import StepFinished as StepFinished
from ._events import StepRetrying as StepRetrying
from ._events import StepSkipped as StepSkipped
from ._events import StepStarted as StepStarted
from ._events import WorkflowCancelled as WorkflowCancelled
from ._events import WorkflowCompleted as WorkflowCompleted
from ._events import WorkflowFailed as WorkflowFailed
from ._events import WorkflowPaused as WorkflowPaused
from ._events import WorkflowResumed as WorkflowResumed
from ._events import WorkflowStarted as WorkflowStarted

__all__ = [
    "CompensationCompleted",
    "CompensationFailed",
    "CompensationStarted",
    "Event",
    "EventStream",
    "EventsDropped",
    "Progress",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepFinished",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
]
