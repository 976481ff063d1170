"""The seed's object model: `Workflow`, `WorkflowStep`, `ExecutionMode`, `StepStatus`."""

from __future__ import annotations

import math
from typing import Any

import pytest

from qtforge.orchestration import (
    ExecutionMode,
    StepStatus,
    Workflow,
    WorkflowStep,
    create_workflow,
    create_workflow_step,
)


def _step(step_id: str = "load", **fields: Any) -> WorkflowStep:
    return WorkflowStep(step_id, "csv_loader", "load_file", **fields)


# -- Workflow ----------------------------------------------------------------------


def test_workflow_starts_empty_and_sequential() -> None:
    """A new `Workflow` has its id and name, no description, steps or deadline, and is
    Sequential."""
    workflow = Workflow("data_processing", "Data Processing Pipeline")
    assert workflow.workflow_id == "data_processing"
    assert workflow.name == "Data Processing Pipeline"
    assert workflow.description == ""
    assert workflow.execution_mode is ExecutionMode.Sequential
    assert workflow.timeout is None
    assert workflow.steps == []


def test_create_workflow_is_the_constructor() -> None:
    """`create_workflow(id, name)` builds the same workflow as ``Workflow(id, name)``."""
    made = create_workflow("w", "W")
    assert isinstance(made, Workflow)
    assert made == Workflow("w", "W")


def test_setters_chain_on_the_same_workflow() -> None:
    """`set_description`, `set_execution_mode`, `add_step` and `set_timeout` return the
    workflow itself and apply their value."""
    workflow = Workflow("w", "W")
    step = _step()
    assert workflow.set_description("Process CSV data") is workflow
    assert workflow.set_execution_mode(ExecutionMode.Parallel) is workflow
    assert workflow.add_step(step) is workflow
    assert workflow.set_timeout(5_000) is workflow
    assert workflow.description == "Process CSV data"
    assert workflow.execution_mode is ExecutionMode.Parallel
    assert workflow.steps == [step]
    assert workflow.timeout == 5_000


@pytest.mark.parametrize("no_deadline", [0, None])
def test_workflow_timeout_zero_or_none_means_none(no_deadline: float | None) -> None:
    """``set_timeout(0)`` and ``set_timeout(None)`` both leave the workflow without a
    deadline."""
    assert Workflow("w").set_timeout(1_000).set_timeout(no_deadline).timeout is None


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, ValueError), (math.nan, ValueError), (True, TypeError), ("10", TypeError)],
)
def test_workflow_rejects_a_bad_timeout(value: object, error: type[Exception]) -> None:
    """A negative, NaN, bool or non-number workflow timeout is refused, naming ``timeout``."""
    workflow = Workflow("w").set_timeout(1_000)
    with pytest.raises(error, match="timeout"):
        workflow.set_timeout(value)  # type: ignore[arg-type]
    assert workflow.timeout == 1_000


def test_workflow_rejects_a_mode_that_is_not_an_execution_mode() -> None:
    """`set_execution_mode` refuses anything but an `ExecutionMode`, naming ``mode``."""
    with pytest.raises(TypeError, match="mode"):
        Workflow("w").set_execution_mode(3)  # type: ignore[arg-type]


def test_add_step_rejects_a_non_step() -> None:
    """`add_step` refuses anything but a `WorkflowStep`."""
    with pytest.raises(TypeError, match="WorkflowStep"):
        Workflow("w").add_step(("load", "csv_loader", "load_file"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("workflow_id", "name"), [(1, "W"), ("w", None)])
def test_workflow_rejects_non_string_id_or_name(workflow_id: object, name: object) -> None:
    """The workflow id and name must be strings."""
    with pytest.raises(TypeError):
        Workflow(workflow_id, name)  # type: ignore[arg-type]


def test_steps_is_a_copy_in_add_order() -> None:
    """`steps` lists the steps in ``add_step`` order, and editing that list changes nothing."""
    first, second = _step("a"), _step("b")
    workflow = Workflow("w").add_step(first).add_step(second)
    listed = workflow.steps
    listed.clear()
    assert workflow.steps == [first, second]
    assert workflow.steps[0] is first


def test_step_edits_after_add_step_still_count() -> None:
    """A step added to a workflow is shared, so editing it before registration counts."""
    step = _step("a")
    workflow = Workflow("w").add_step(step)
    step.max_retries = 3
    assert workflow.steps[0].max_retries == 3


def test_get_step_finds_a_step_by_id() -> None:
    """`get_step` returns the step with that id, or ``None``."""
    step = _step("a")
    workflow = Workflow("w").add_step(step)
    assert workflow.get_step("a") is step
    assert workflow.get_step("missing") is None


def test_remove_step_removes_it_and_reports_whether_it_did() -> None:
    """`remove_step` drops the step with that id and says whether there was one."""
    workflow = Workflow("w").add_step(_step("a")).add_step(_step("b"))
    assert workflow.remove_step("a") is True
    assert [step.step_id for step in workflow.steps] == ["b"]
    assert workflow.remove_step("a") is False


def test_workflows_compare_by_content() -> None:
    """Two workflows built alike are equal; a different step makes them differ."""

    def build(method: str) -> Workflow:
        return (
            Workflow("w", "W")
            .set_description("d")
            .add_step(WorkflowStep("a", "p", method, parameters={"k": 1}))
        )

    assert build("m") == build("m")
    assert build("m") != build("other")


# -- WorkflowStep ------------------------------------------------------------------


def test_step_keeps_its_ids() -> None:
    """``WorkflowStep(step_id, plugin_id, method_name)`` keeps the three ids."""
    step = WorkflowStep("load", "csv_loader", "load_file")
    assert (step.step_id, step.plugin_id, step.method_name) == ("load", "csv_loader", "load_file")


def test_create_workflow_step_is_the_constructor() -> None:
    """`create_workflow_step` builds the same step as the constructor."""
    assert create_workflow_step("load", "csv_loader", "load_file") == _step()


DEFAULTS: dict[str, Any] = {
    "parameters": {},
    "dependencies": [],
    "timeout": 60_000,
    "max_retries": 0,
    "critical": True,
    "retry_delay": 1_000,
    "retry_backoff": 2.0,
    "retry_max_delay": 60_000,
    "retry_jitter": 0.1,
    "retry_on": None,
    "condition": None,
    "name": "",
    "description": "",
}


@pytest.mark.parametrize(("field", "default"), DEFAULTS.items())
def test_step_field_defaults(field: str, default: object) -> None:
    """Every step field starts at its documented default (times in milliseconds)."""
    assert getattr(_step(), field) == default


def _retry_on_timeouts(error: Exception) -> bool:
    return isinstance(error, TimeoutError)


GOOD_VALUES: list[tuple[str, Any]] = [
    ("parameters", {"file_path": "input.csv", "format": "csv"}),
    ("dependencies", ["previous_step_id"]),
    ("timeout", 30_000),
    ("timeout", 0),
    ("timeout", None),
    ("timeout", 2.5),
    ("max_retries", 3),
    ("critical", False),
    ("retry_delay", 250),
    ("retry_backoff", 1.5),
    ("retry_max_delay", 10_000),
    ("retry_jitter", 0.0),
    ("retry_jitter", 1.0),
    ("retry_on", _retry_on_timeouts),
    ("condition", "row_count < 10000"),
    ("condition", bool),
    ("name", "Load the data"),
    ("description", "Reads the input CSV"),
]


@pytest.mark.parametrize(("field", "value"), GOOD_VALUES)
def test_step_fields_are_assignable(field: str, value: object) -> None:
    """Every step field takes a valid value by assignment, as in the seed's examples."""
    step = _step()
    setattr(step, field, value)
    assert getattr(step, field) == value


@pytest.mark.parametrize(("field", "value"), GOOD_VALUES)
def test_step_fields_are_keyword_arguments(field: str, value: object) -> None:
    """Every step field can also be given to the constructor by keyword."""
    assert getattr(_step(**{field: value}), field) == value


def test_dependencies_accept_any_sequence_of_ids_and_store_a_list() -> None:
    """A tuple of step ids is accepted and kept as a list."""
    step = _step()
    step.dependencies = ("a", "b")  # type: ignore[assignment]
    assert step.dependencies == ["a", "b"]


def test_assigned_collections_are_copied() -> None:
    """The step keeps its own copy of an assigned parameters dict or dependency list."""
    parameters = {"k": 1}
    dependencies = ["a"]
    step = _step(parameters=parameters, dependencies=dependencies)
    parameters["k"] = 2
    dependencies.append("b")
    assert step.parameters == {"k": 1}
    assert step.dependencies == ["a"]


BAD_VALUES: list[tuple[str, Any, type[Exception]]] = [
    ("timeout", -1, ValueError),
    ("timeout", math.nan, ValueError),
    ("timeout", True, TypeError),
    ("timeout", "60000", TypeError),
    ("dependencies", "load", TypeError),
    ("dependencies", b"load", TypeError),
    ("dependencies", {"load": True}, TypeError),
    ("dependencies", ["load", 2], TypeError),
    ("dependencies", None, TypeError),
    ("parameters", [("file_path", "input.csv")], TypeError),
    ("parameters", "file_path=input.csv", TypeError),
    ("parameters", {1: "x"}, TypeError),
    ("parameters", None, TypeError),
    ("critical", 1, TypeError),
    ("critical", "yes", TypeError),
    ("critical", None, TypeError),
    ("max_retries", -1, ValueError),
    ("max_retries", True, TypeError),
    ("max_retries", 1.5, TypeError),
    ("max_retries", None, TypeError),
    ("retry_delay", -1, ValueError),
    ("retry_delay", math.nan, ValueError),
    ("retry_delay", False, TypeError),
    ("retry_backoff", 0.5, ValueError),
    ("retry_backoff", math.nan, ValueError),
    ("retry_max_delay", -1, ValueError),
    ("retry_max_delay", math.nan, ValueError),
    ("retry_jitter", -0.1, ValueError),
    ("retry_jitter", 1.5, ValueError),
    ("retry_jitter", math.nan, ValueError),
    ("retry_on", "TimeoutError", TypeError),
    ("condition", 42, TypeError),
    ("name", None, TypeError),
    ("description", 3, TypeError),
]


@pytest.mark.parametrize(("field", "value", "error"), BAD_VALUES)
def test_bad_assignment_fails_at_once_naming_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    """Assigning a bad value raises at once, names the field, and keeps the old value."""
    step = _step()
    before = getattr(step, field)
    with pytest.raises(error, match=field):
        setattr(step, field, value)
    assert getattr(step, field) == before


@pytest.mark.parametrize(("field", "value", "error"), BAD_VALUES)
def test_bad_keyword_argument_fails_naming_the_field(
    field: str, value: object, error: type[Exception]
) -> None:
    """The constructor checks its keyword arguments as assignment does."""
    with pytest.raises(error, match=field):
        _step(**{field: value})


@pytest.mark.parametrize("position", range(3))
def test_step_ids_must_be_strings(position: int) -> None:
    """`step_id`, `plugin_id` and `method_name` must be strings."""
    ids: list[Any] = ["load", "csv_loader", "load_file"]
    ids[position] = 7
    with pytest.raises(TypeError):
        WorkflowStep(*ids)


# -- enumerations ------------------------------------------------------------------


def test_execution_modes_and_their_values() -> None:
    """`ExecutionMode` has exactly the seed's four modes, valued by their lowercase names."""
    assert {mode.name: mode.value for mode in ExecutionMode} == {
        "Sequential": "sequential",
        "Parallel": "parallel",
        "Conditional": "conditional",
        "Pipeline": "pipeline",
    }


def test_step_statuses_and_their_values() -> None:
    """`StepStatus` has the seed's six statuses plus Retrying, valued by lowercase names."""
    assert {status.name: status.value for status in StepStatus} == {
        "Pending": "pending",
        "Running": "running",
        "Retrying": "retrying",
        "Completed": "completed",
        "Failed": "failed",
        "Skipped": "skipped",
        "Cancelled": "cancelled",
    }


def test_enum_members_are_their_status_strings() -> None:
    """Enum members compare equal to (and format as) the strings used in status dicts."""
    assert StepStatus.Completed == "completed"
    assert f"{StepStatus.Cancelled}" == "cancelled"
    assert ExecutionMode("pipeline") is ExecutionMode.Pipeline
