"""Workflow validation at registration, and the immutable snapshot it registers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from qtforge import Expected, PluginError, PluginErrorCode, PluginManager
from qtforge.orchestration import ExecutionMode, PluginOrchestrator, Workflow, WorkflowStep
from qtforge.orchestration._spec import WorkflowSpec, validate_workflow

BIG = 100_000


def _step(step_id: str, *dependencies: str, **fields: Any) -> WorkflowStep:
    return WorkflowStep(step_id, "plugin", "method", dependencies=list(dependencies), **fields)


def _workflow(*steps: WorkflowStep, workflow_id: str = "w") -> Workflow:
    workflow = Workflow(workflow_id, "W")
    for step in steps:
        workflow.add_step(step)
    return workflow


def _spec(workflow: Workflow) -> WorkflowSpec:
    validated = validate_workflow(workflow)
    assert validated, validated.error()
    return validated.value()


def _order(workflow: Workflow) -> list[str]:
    spec = _spec(workflow)
    return [spec.steps[i].step_id for i in spec.order]


@pytest.fixture
def orchestrator() -> Iterator[PluginOrchestrator]:
    with PluginOrchestrator(PluginManager()) as orchestrator:
        yield orchestrator


def _assert_rejected(
    orchestrator: PluginOrchestrator,
    workflow: Workflow,
    code: PluginErrorCode,
    mentions: Iterable[str],
) -> PluginError:
    """Both the pure validator and registration reject `workflow` alike."""
    validated = validate_workflow(workflow)
    registered = orchestrator.register_workflow(workflow)
    assert not validated
    assert registered == validated
    error = validated.error()
    assert error.code is code, error
    for text in mentions:
        assert text in error.message, (text, error.message)
    assert not orchestrator.has_workflow(workflow.workflow_id)
    return error


# -- what is rejected --------------------------------------------------------------


def test_empty_workflow_id_is_invalid_configuration(orchestrator: PluginOrchestrator) -> None:
    """A workflow with an empty id is refused with ``InvalidConfiguration``."""
    _assert_rejected(
        orchestrator,
        _workflow(_step("a"), workflow_id=""),
        PluginErrorCode.InvalidConfiguration,
        ["id"],
    )


def test_workflow_without_steps_is_invalid_configuration(
    orchestrator: PluginOrchestrator,
) -> None:
    """A workflow with no steps is refused with ``InvalidConfiguration`` naming it."""
    _assert_rejected(
        orchestrator, _workflow(), PluginErrorCode.InvalidConfiguration, ["'w'", "no steps"]
    )


def test_duplicate_step_id_is_invalid_configuration(orchestrator: PluginOrchestrator) -> None:
    """Two steps with one id are refused with ``InvalidConfiguration`` naming the id."""
    _assert_rejected(
        orchestrator,
        _workflow(_step("a"), _step("b"), _step("a")),
        PluginErrorCode.InvalidConfiguration,
        ["'w'", "'a'"],
    )


@pytest.mark.parametrize(
    ("ids", "field", "where"),
    [
        (("", "plugin", "method"), "step_id", "#1"),
        (("a", "", "method"), "plugin_id", "'a'"),
        (("a", "plugin", ""), "method_name", "'a'"),
    ],
)
def test_empty_step_ids_are_invalid_configuration(
    orchestrator: PluginOrchestrator, ids: tuple[str, str, str], field: str, where: str
) -> None:
    """An empty step id, plugin id or method name is refused, naming the step and field."""
    _assert_rejected(
        orchestrator,
        _workflow(WorkflowStep(*ids)),
        PluginErrorCode.InvalidConfiguration,
        ["'w'", field, where],
    )


def test_unknown_dependency_is_dependency_missing(orchestrator: PluginOrchestrator) -> None:
    """A dependency on a step that does not exist is ``DependencyMissing``, naming both."""
    _assert_rejected(
        orchestrator,
        _workflow(_step("load"), _step("save", "transform")),
        PluginErrorCode.DependencyMissing,
        ["'w'", "'save'", "'transform'"],
    )


def test_self_dependency_is_circular(orchestrator: PluginOrchestrator) -> None:
    """A step depending on itself is ``CircularDependency`` naming the one-step cycle."""
    _assert_rejected(
        orchestrator,
        _workflow(_step("a"), _step("b", "b")),
        PluginErrorCode.CircularDependency,
        ["'w'", "b -> b"],
    )


@pytest.mark.parametrize(
    ("steps", "cycle"),
    [
        pytest.param([_step("a", "b"), _step("b", "a")], "a -> b -> a", id="two"),
        # b runs after a, c after b, a after c; the first-added step leads.
        pytest.param(
            [_step("a", "c"), _step("b", "a"), _step("c", "b")], "a -> b -> c -> a", id="three"
        ),
        # "d" waits on the cycle without being part of it; "c" was added first.
        pytest.param(
            [_step("d", "b"), _step("c", "b"), _step("b", "a"), _step("a", "c")],
            "c -> a -> b -> c",
            id="upstream-of-outsider",
        ),
        pytest.param(
            [_step("root"), _step("x", "root", "y"), _step("y", "x")],
            "x -> y -> x",
            id="behind-a-root",
        ),
    ],
)
def test_cycle_is_circular_and_named_in_running_order(
    orchestrator: PluginOrchestrator, steps: list[WorkflowStep], cycle: str
) -> None:
    """A cycle is ``CircularDependency``; the message lists it in running order, from its
    earliest-added step back to that step, and leaves out steps outside it."""
    error = _assert_rejected(
        orchestrator, _workflow(*steps), PluginErrorCode.CircularDependency, ["'w'", cycle]
    )
    assert "d ->" not in error.message
    assert "root" not in error.message


def test_condition_with_a_syntax_error_is_invalid_configuration(
    orchestrator: PluginOrchestrator,
) -> None:
    """A condition string that does not parse is refused, naming the expression and step."""
    _assert_rejected(
        orchestrator,
        _workflow(_step("a", condition="row_count <")),
        PluginErrorCode.InvalidConfiguration,
        ["'w'", "'a'", "'row_count <'"],
    )


def test_valid_condition_string_and_callable_are_accepted() -> None:
    """An expression string and a callable are both accepted as conditions."""
    assert validate_workflow(
        _workflow(_step("a", condition="row_count < 10000"), _step("b", condition=bool))
    )


def test_duplicate_workflow_id_is_already_exists(orchestrator: PluginOrchestrator) -> None:
    """Registering a second workflow under a taken id is ``AlreadyExists`` and keeps the
    first."""
    first = _workflow(_step("a"))
    assert orchestrator.register_workflow(first)
    second = orchestrator.register_workflow(_workflow(_step("other")))
    assert not second
    assert second.error().code is PluginErrorCode.AlreadyExists
    assert "'w'" in second.error().message
    assert orchestrator.get_workflow("w").value() == first


def test_register_workflow_rejects_a_non_workflow(orchestrator: PluginOrchestrator) -> None:
    """Passing something other than a `Workflow` is a caller bug: `TypeError`."""
    with pytest.raises(TypeError, match="Workflow"):
        orchestrator.register_workflow("w")  # type: ignore[arg-type]


# -- the validated plan ------------------------------------------------------------


def test_independent_steps_keep_add_order() -> None:
    """Steps with no dependencies are ordered as they were added."""
    assert _order(_workflow(_step("c"), _step("a"), _step("b"))) == ["c", "a", "b"]


def test_ties_among_ready_steps_go_to_the_earliest_added() -> None:
    """Whenever several steps are ready, the one added first comes first."""
    workflow = _workflow(
        _step("report", "clean"),
        _step("fetch"),
        _step("clean", "fetch"),
        _step("audit"),
    )
    assert _order(workflow) == ["fetch", "clean", "report", "audit"]


def test_dependencies_always_come_first() -> None:
    """In a diamond added sink-first, every step comes after all its dependencies."""
    workflow = _workflow(
        _step("join", "left", "right"),
        _step("right", "root"),
        _step("left", "root"),
        _step("root"),
    )
    assert _order(workflow) == ["root", "right", "left", "join"]


def test_spec_lays_out_the_graph_by_index() -> None:
    """The spec's `deps`, `dependents` and `position` describe the graph by add index,
    with repeated dependencies counted once."""
    spec = _spec(_workflow(_step("b", "a", "a"), _step("a"), _step("c", "a", "b")))
    assert spec.index == {"b": 0, "a": 1, "c": 2}
    assert spec.deps == ((1,), (), (1, 0))
    assert spec.dependents == ((2,), (0, 2), ())
    assert spec.order == (1, 0, 2)
    assert [spec.order[place] for place in spec.position] == [0, 1, 2]


def test_spec_keeps_the_workflow_settings() -> None:
    """The snapshot keeps the id, name, description, mode and deadline."""
    workflow = (
        _workflow(_step("a"))
        .set_description("d")
        .set_execution_mode(ExecutionMode.Pipeline)
        .set_timeout(1_500)
    )
    spec = _spec(workflow)
    assert (spec.workflow_id, spec.name, spec.description) == ("w", "W", "d")
    assert spec.mode is ExecutionMode.Pipeline
    assert spec.timeout_seconds == 1.5


# -- large workflows ---------------------------------------------------------------


def _chain(size: int) -> Workflow:
    """Step i depends on step i + 1, so the order is the reverse of the add order."""
    return _workflow(*(_step(f"s{i}", f"s{i + 1}") for i in range(size - 1)), _step(f"s{size - 1}"))


def _fan_in(size: int) -> Workflow:
    roots = [_step(f"r{i}") for i in range(size - 1)]
    return _workflow(*roots, _step("sink", *(root.step_id for root in roots)))


def _timed_validation(workflow: Workflow) -> tuple[Expected[WorkflowSpec, PluginError], float]:
    """Validate `workflow`; also return the CPU seconds it took (other processes excluded)."""
    started = time.process_time()
    validated = validate_workflow(workflow)
    return validated, time.process_time() - started


@pytest.mark.slow
def test_long_chain_validates_quickly_without_recursion() -> None:
    """A 100,000-step chain validates in well under 2 s, in dependency order."""
    validated, elapsed = _timed_validation(_chain(BIG))
    assert validated, validated.error()
    assert validated.value().order == tuple(range(BIG - 1, -1, -1))
    assert elapsed < 2.0


@pytest.mark.slow
def test_wide_fan_in_validates_quickly() -> None:
    """A step depending on 99,999 others validates in well under 2 s and comes last."""
    validated, elapsed = _timed_validation(_fan_in(BIG))
    assert validated, validated.error()
    assert validated.value().order == tuple(range(BIG))
    assert elapsed < 2.0


@pytest.mark.slow
def test_long_cycle_is_found_without_recursion() -> None:
    """A 100,000-step cycle is reported as ``CircularDependency`` in well under 2 s."""
    workflow = _chain(BIG)
    last = workflow.get_step(f"s{BIG - 1}")
    assert last is not None
    last.dependencies = ["s0"]
    validated, elapsed = _timed_validation(workflow)
    assert not validated
    assert validated.error().code is PluginErrorCode.CircularDependency
    assert f"s0 -> s{BIG - 1} -> s{BIG - 2} ->" in validated.error().message
    assert elapsed < 2.0


# -- the snapshot ------------------------------------------------------------------


def _retry_on_os_errors(error: Exception) -> bool:
    return isinstance(error, OSError)


def _rich_workflow() -> Workflow:
    load = _step(
        "load",
        parameters={"config": {"columns": ["a", "b"]}, "path": "in.csv"},
        timeout=None,
        max_retries=2,
        retry_delay=10,
        retry_on=_retry_on_os_errors,
        name="Load",
        description="Reads the file",
    )
    save = _step("save", "load", condition="rows > 0", critical=False, retry_jitter=0.0)
    return (
        _workflow(load, save)
        .set_description("d")
        .set_execution_mode(ExecutionMode.Conditional)
        .set_timeout(90_000)
    )


def test_get_workflow_returns_a_copy_equal_to_the_registered_one(
    orchestrator: PluginOrchestrator,
) -> None:
    """`get_workflow` returns a new `Workflow` equal to the one registered, every field
    included."""
    workflow = _rich_workflow()
    assert orchestrator.register_workflow(workflow)
    copy = orchestrator.get_workflow("w").value()
    assert copy is not workflow
    assert copy == workflow
    assert copy.steps[0] is not workflow.steps[0]


def test_editing_the_builders_after_registration_changes_nothing(
    orchestrator: PluginOrchestrator,
) -> None:
    """After `register_workflow`, edits to the workflow, its steps and nested parameter
    values do not reach what was registered."""
    workflow = _rich_workflow()
    assert orchestrator.register_workflow(workflow)
    load = workflow.steps[0]
    load.parameters["config"]["columns"].append("c")
    load.parameters["path"] = "other.csv"
    load.max_retries = 0
    load.dependencies.append("save")
    workflow.set_description("changed").set_timeout(None).add_step(_step("extra"))
    workflow.remove_step("save")
    assert orchestrator.get_workflow("w").value() == _rich_workflow()


def test_editing_a_returned_copy_changes_nothing(orchestrator: PluginOrchestrator) -> None:
    """Edits to a workflow returned by `get_workflow` do not reach the registry."""
    assert orchestrator.register_workflow(_rich_workflow())
    copy = orchestrator.get_workflow("w").value()
    copy.steps[0].parameters["config"]["columns"].clear()
    copy.set_execution_mode(ExecutionMode.Sequential)
    assert orchestrator.get_workflow("w").value() == _rich_workflow()


def test_spec_is_immutable() -> None:
    """The validated spec and its steps cannot be changed, nor their parameters."""
    spec = _spec(_rich_workflow())
    with pytest.raises(AttributeError):
        spec.timeout = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        spec.steps[0].critical = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.steps[0].parameters["path"] = "x"  # type: ignore[index]


def test_uncopyable_parameter_values_are_shared() -> None:
    """A parameter value that cannot be deep-copied (a lock, say) is kept as it is."""
    lock = threading.Lock()
    spec = _spec(_workflow(_step("a", parameters={"lock": lock})))
    assert spec.steps[0].parameters["lock"] is lock
