"""Workflow orchestration: the seed's ``qtforge.orchestration`` API.

`PluginOrchestrator` is the blocking facade; `AsyncPluginOrchestrator` the async-native
engine behind it. Workflows are built from `Workflow` and `WorkflowStep`; execution
events are in `qtforge.orchestration.events`.
"""

from . import events as events
from ._context import StepContext as StepContext
from ._engine import AsyncPluginOrchestrator as AsyncPluginOrchestrator
from ._facade import PluginOrchestrator as PluginOrchestrator
from ._facade import create_orchestrator as create_orchestrator
from ._fileproblems import FileProblem as FileProblem
from ._fileproblems import WorkflowFileError as WorkflowFileError
from ._model import ExecutionMode as ExecutionMode
from ._model import StepStatus as StepStatus
from ._workflow import Workflow as Workflow
from ._workflow import WorkflowStep as WorkflowStep
from ._workflow import create_workflow as create_workflow
from ._workflow import create_workflow_step as create_workflow_step

__all__ = [
    "AsyncPluginOrchestrator",
    "ExecutionMode",
    "FileProblem",
    "PluginOrchestrator",
    "StepContext",
    "StepStatus",
    "Workflow",
    "WorkflowFileError",
    "WorkflowStep",
    "create_orchestrator",
    "create_workflow",
    "create_workflow_step",
    "events",
]
