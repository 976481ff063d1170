"""The seed document's API reference, run as written.

Every code block of the "Class Reference", "Workflow Class", "WorkflowStep Class" and
"Enumerations" sections of ``plugin-orchestrator-python-api.md`` (not its usage
examples), including the ``>>>`` examples of the method docstrings, is copied here
verbatim and run against small plugins registered through
``orchestrator.plugin_manager.register_plugin(...)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import qtforge
from qtforge import PluginErrorCode

# The method stubs of the seed, verbatim (their docstrings are replaced by ``...``).
# Executing them also checks that their annotations evaluate, e.g. that
# ``qtforge.Expected[None, qtforge.PluginError]`` can be subscripted.
ORCHESTRATOR_STUBS = """
def register_workflow(self, workflow: qtforge.orchestration.Workflow) -> qtforge.Expected[None, qtforge.PluginError]: ...
def unregister_workflow(self, workflow_id: str) -> qtforge.Expected[None, qtforge.PluginError]: ...
def has_workflow(self, workflow_id: str) -> bool: ...
def get_workflow(self, workflow_id: str) -> qtforge.Expected[qtforge.orchestration.Workflow, qtforge.PluginError]: ...
def list_workflows(self) -> List[str]: ...
def execute_workflow(self, workflow_id: str, initial_data: Dict = None, async_execution: bool = False) -> qtforge.Expected[str, qtforge.PluginError]: ...
def cancel_workflow(self, execution_id: str) -> qtforge.Expected[None, qtforge.PluginError]: ...
def get_workflow_status(self, execution_id: str) -> qtforge.Expected[Dict, qtforge.PluginError]: ...
def get_workflow_results(self, execution_id: str) -> qtforge.Expected[Dict, qtforge.PluginError]: ...
def clear_workflows(self) -> None: ...
"""  # noqa: E501  # verbatim from the seed

WORKFLOW_STUBS = """
def set_description(self, description: str) -> qtforge.orchestration.Workflow: ...
def set_execution_mode(self, mode: qtforge.orchestration.ExecutionMode) -> qtforge.orchestration.Workflow: ...
def add_step(self, step: qtforge.orchestration.WorkflowStep) -> qtforge.orchestration.Workflow: ...
"""  # noqa: E501  # verbatim from the seed


def stubs(source: str) -> dict[str, Callable[..., Any]]:
    """The functions `source` defines, with the names the seed's stubs use in scope."""
    namespace: dict[str, Any] = {"qtforge": qtforge, "Dict": dict, "List": list}
    exec(source, namespace)
    return {name: value for name, value in namespace.items() if inspect.isfunction(value)}


def shape(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """What a caller relies on: parameter names, kinds and defaults, in order."""
    return [
        (parameter.name, parameter.kind, parameter.default)
        for parameter in inspect.signature(function).parameters.values()
    ]


class DataLoader:
    """The ``data_loader`` plugin of the ``add_step`` docstring example."""

    def load(self, input_file: str) -> dict[str, Any]:
        return {"rows": 3, "source": input_file}


class Recorder:
    """A plugin that returns the inputs it was called with."""

    def method_name(self, **inputs: Any) -> dict[str, Any]:
        return {"seen": dict(inputs)}

    def previous(self) -> dict[str, str]:
        return {"previous": "done"}


@pytest.fixture
def orchestrator() -> Iterator[qtforge.orchestration.PluginOrchestrator]:
    """The seed's ``PluginOrchestrator()``, with the documents' plugins registered."""
    orchestrator = qtforge.orchestration.PluginOrchestrator()
    orchestrator.plugin_manager.register_plugin(DataLoader(), "data_loader").value()
    orchestrator.plugin_manager.register_plugin(Recorder(), "plugin_id").value()
    yield orchestrator
    orchestrator.close()


# -- Class Reference -------------------------------------------------------------------


def test_constructor_and_factory_methods_block() -> None:
    """The "Constructor and Factory Methods" block runs as written and each line makes a
    `PluginOrchestrator`."""
    made = []
    # Create orchestrator instance
    orchestrator = qtforge.orchestration.PluginOrchestrator()
    made.append(orchestrator)

    # Alternative creation methods
    orchestrator = qtforge.orchestration.create_orchestrator()
    made.append(orchestrator)
    orchestrator = qtforge.create_orchestrator()
    made.append(orchestrator)

    for each in made:
        assert isinstance(each, qtforge.orchestration.PluginOrchestrator)
        each.close()


@pytest.mark.parametrize(
    ("cls", "stub"),
    [
        (qtforge.orchestration.PluginOrchestrator, stub)
        for stub in stubs(ORCHESTRATOR_STUBS).values()
    ]
    + [(qtforge.orchestration.Workflow, stub) for stub in stubs(WORKFLOW_STUBS).values()],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_method_signature_matches_the_seed(cls: type, stub: Callable[..., Any]) -> None:
    """Each documented method exists with the seed's parameter names, kinds and
    defaults, so every documented call form works."""
    assert shape(getattr(cls, stub.__name__)) == shape(stub)


def test_register_workflow_docstring_example_as_written(
    orchestrator: qtforge.orchestration.PluginOrchestrator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ``register_workflow`` example registers an empty workflow, which SPEC 2 rejects
    with ``InvalidConfiguration``: the example then prints nothing."""
    workflow = qtforge.orchestration.Workflow("data_pipeline", "Data Processing")
    result = orchestrator.register_workflow(workflow)
    if result:
        print("Workflow registered successfully")

    assert capsys.readouterr().out == ""
    assert result.error().code is PluginErrorCode.InvalidConfiguration
    assert "data_pipeline" in result.error().message


def test_docstring_examples_chain_into_a_working_workflow(
    orchestrator: qtforge.orchestration.PluginOrchestrator, capsys: pytest.CaptureFixture[str]
) -> None:
    """The docstring examples of ``set_execution_mode``, ``add_step``,
    ``register_workflow``, ``list_workflows``, ``execute_workflow`` and
    ``get_workflow_status``, run in that order, build, run and report a workflow."""
    workflow = qtforge.orchestration.Workflow("data_pipeline", "Data Processing")
    workflow.set_execution_mode(qtforge.orchestration.ExecutionMode.Sequential)
    step = qtforge.orchestration.WorkflowStep("load_data", "data_loader", "load")
    workflow.add_step(step)
    result = orchestrator.register_workflow(workflow)
    if result:
        print("Workflow registered successfully")
    workflows = orchestrator.list_workflows()
    print(f"Registered workflows: {workflows}")
    result = orchestrator.execute_workflow("data_pipeline", {"input_file": "data.csv"})
    if result:
        execution_id = result.value()
        print(f"Workflow started: {execution_id}")
    status_result = orchestrator.get_workflow_status(execution_id)
    if status_result:
        status = status_result.value()
        print(f"Progress: {status['progress']}%")
        print(f"Current step: {status['current_step']}")

    assert capsys.readouterr().out.splitlines() == [
        "Workflow registered successfully",
        "Registered workflows: ['data_pipeline']",
        f"Workflow started: {execution_id}",
        "Progress: 100.0%",
        "Current step: None",
    ]
    results = orchestrator.get_workflow_results(execution_id).value()
    assert results["data"] == {"input_file": "data.csv", "rows": 3, "source": "data.csv"}


def test_registry_methods_behave_as_documented(
    orchestrator: qtforge.orchestration.PluginOrchestrator,
) -> None:
    """``has``/``get``/``list``/``unregister``/``clear_workflows`` report and change the
    registered workflows, with ``NotFound`` for an unknown id."""
    workflow = qtforge.orchestration.Workflow("data_pipeline", "Data Processing")
    workflow.add_step(qtforge.orchestration.WorkflowStep("load_data", "data_loader", "load"))
    assert orchestrator.register_workflow(workflow)
    duplicate = orchestrator.register_workflow(workflow)
    assert duplicate.error().code is PluginErrorCode.AlreadyExists

    assert orchestrator.has_workflow("data_pipeline") is True
    assert orchestrator.get_workflow("data_pipeline").value() == workflow
    assert orchestrator.list_workflows() == ["data_pipeline"]

    assert orchestrator.unregister_workflow("data_pipeline").value() is None
    assert orchestrator.has_workflow("data_pipeline") is False
    for missing in (
        orchestrator.get_workflow("data_pipeline"),
        orchestrator.unregister_workflow("data_pipeline"),
    ):
        assert missing.error().code is PluginErrorCode.NotFound
        assert "data_pipeline" in missing.error().message

    for workflow_id in ("first", "second"):
        orchestrator.register_workflow(
            qtforge.orchestration.Workflow(workflow_id).add_step(
                qtforge.orchestration.WorkflowStep("load_data", "data_loader", "load")
            )
        )
    assert orchestrator.clear_workflows() is None
    assert orchestrator.list_workflows() == []


def test_except_plugin_error_catches_value_of_a_failed_expected(
    orchestrator: qtforge.orchestration.PluginOrchestrator,
) -> None:
    """``.value()`` of a failed `Expected` raises the `PluginError` it holds, which
    ``except qtforge.PluginError`` catches with its code and message."""
    caught: list[qtforge.PluginError] = []
    for failed in (
        lambda: orchestrator.execute_workflow("robust_processing"),
        lambda: orchestrator.get_workflow_status("no-such-execution"),
    ):
        try:
            failed().value()
        except qtforge.PluginError as e:
            caught.append(e)
    assert [error.code for error in caught] == [PluginErrorCode.NotFound] * 2
    assert "robust_processing" in caught[0].message
    assert "no-such-execution" in str(caught[1])


def test_cancel_and_results_of_a_finished_execution(
    orchestrator: qtforge.orchestration.PluginOrchestrator,
) -> None:
    """``get_workflow_results`` of a finished execution holds its data; cancelling it is
    ``InvalidState`` (SPEC 2)."""
    orchestrator.register_workflow(
        qtforge.orchestration.Workflow("data_pipeline").add_step(
            qtforge.orchestration.WorkflowStep("load_data", "data_loader", "load")
        )
    ).value()
    execution_id = orchestrator.execute_workflow("data_pipeline", {"input_file": "x"}).value()
    assert orchestrator.get_workflow_results(execution_id).value()["status"] == "completed"
    cancelled = orchestrator.cancel_workflow(execution_id)
    assert cancelled.error().code is PluginErrorCode.InvalidState


# -- Workflow Class ------------------------------------------------------------------


def test_workflow_constructor_block() -> None:
    """Both forms of the "Workflow Class / Constructor" block build the same workflow."""
    built = []
    # Create workflow
    workflow = qtforge.orchestration.Workflow("workflow_id", "Workflow Name")
    built.append(workflow)

    # Alternative creation
    workflow = qtforge.orchestration.create_workflow("workflow_id", "Workflow Name")
    built.append(workflow)

    for each in built:
        assert isinstance(each, qtforge.orchestration.Workflow)
        assert (each.workflow_id, each.name) == ("workflow_id", "Workflow Name")
    assert built[0] == built[1]


def test_configuration_methods_chain() -> None:
    """``set_description``, ``set_execution_mode`` and ``add_step`` return the workflow
    itself ("Self for method chaining") and keep what they were given."""
    workflow = qtforge.orchestration.Workflow("workflow_id", "Workflow Name")
    step = qtforge.orchestration.WorkflowStep("load_data", "data_loader", "load")
    chained = (
        workflow.set_description("Process CSV data")
        .set_execution_mode(qtforge.orchestration.ExecutionMode.Parallel)
        .add_step(step)
    )
    assert chained is workflow
    assert workflow.description == "Process CSV data"
    assert workflow.execution_mode is qtforge.orchestration.ExecutionMode.Parallel
    assert workflow.steps == [step]


# -- WorkflowStep Class --------------------------------------------------------------


def test_workflow_step_constructor_block() -> None:
    """Both forms of the "WorkflowStep Class / Constructor" block build the same step."""
    built = []
    # Create workflow step
    step = qtforge.orchestration.WorkflowStep("step_id", "plugin_id", "method_name")
    built.append(step)

    # Alternative creation
    step = qtforge.orchestration.create_workflow_step("step_id", "plugin_id", "method_name")
    built.append(step)

    for each in built:
        assert isinstance(each, qtforge.orchestration.WorkflowStep)
        assert (each.step_id, each.plugin_id, each.method_name) == (
            "step_id",
            "plugin_id",
            "method_name",
        )
    assert built[0] == built[1]


def test_properties_block_configures_a_step_that_runs(
    orchestrator: qtforge.orchestration.PluginOrchestrator,
) -> None:
    """The "Properties" block's assignments stick, are kept by registration, and the
    step runs with those parameters after its dependency."""
    step = qtforge.orchestration.WorkflowStep("step_id", "plugin_id", "method_name")
    # Step configuration
    step.parameters = {"input_file": "data.csv", "format": "csv"}
    step.dependencies = ["previous_step_id"]
    step.timeout = 60000  # milliseconds
    step.max_retries = 3
    step.critical = True

    assert step.parameters == {"input_file": "data.csv", "format": "csv"}
    assert step.dependencies == ["previous_step_id"]
    assert (step.timeout, step.max_retries, step.critical) == (60000, 3, True)
    previous = qtforge.orchestration.WorkflowStep("previous_step_id", "plugin_id", "previous")
    workflow = qtforge.orchestration.Workflow("workflow_id").add_step(previous).add_step(step)
    orchestrator.register_workflow(workflow).value()
    assert orchestrator.get_workflow("workflow_id").value().get_step("step_id") == step

    execution_id = orchestrator.execute_workflow("workflow_id").value()
    results = orchestrator.get_workflow_results(execution_id).value()
    assert results["steps"]["step_id"]["result"] == {
        "seen": {"previous": "done", "input_file": "data.csv", "format": "csv"}
    }


# -- Enumerations --------------------------------------------------------------------


def test_execution_mode_block() -> None:
    """The "ExecutionMode" block names exactly the four modes."""
    modes = [
        # Available execution modes
        qtforge.orchestration.ExecutionMode.Sequential,  # Execute steps one by one
        qtforge.orchestration.ExecutionMode.Parallel,  # Execute independent steps in parallel
        qtforge.orchestration.ExecutionMode.Conditional,  # Execute based on conditions
        qtforge.orchestration.ExecutionMode.Pipeline,  # Execute as pipeline with data flow
    ]
    assert modes == list(qtforge.orchestration.ExecutionMode)


def test_step_status_block() -> None:
    """The "StepStatus" block names the six documented states, whose values are the
    lowercase status strings of status dictionaries (SPEC 5)."""
    states = [
        # Step execution states
        qtforge.orchestration.StepStatus.Pending,  # Step is waiting to be executed
        qtforge.orchestration.StepStatus.Running,  # Step is currently executing
        qtforge.orchestration.StepStatus.Completed,  # Step completed successfully
        qtforge.orchestration.StepStatus.Failed,  # Step failed with error
        qtforge.orchestration.StepStatus.Skipped,  # Step was skipped due to conditions
        qtforge.orchestration.StepStatus.Cancelled,  # Step was cancelled
    ]
    assert [state.value for state in states] == [state.name.lower() for state in states]
    assert set(qtforge.orchestration.StepStatus) - set(states) == {
        qtforge.orchestration.StepStatus.Retrying
    }
