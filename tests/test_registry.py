"""The orchestrator's workflow registry: plain calls that never start the engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from qtforge import PluginErrorCode, PluginManager
from qtforge.orchestration import AsyncPluginOrchestrator, PluginOrchestrator, Workflow
from qtforge.orchestration import WorkflowStep as Step


def _workflow(workflow_id: str) -> Workflow:
    return Workflow(workflow_id, workflow_id.title()).add_step(Step("a", "plugin", "method"))


@pytest.fixture
def orchestrator() -> Iterator[PluginOrchestrator]:
    """A facade whose engine thread must never start; checked when the test ends."""
    threads_before = threading.active_count()
    orchestrator = PluginOrchestrator(PluginManager())
    yield orchestrator
    assert orchestrator._thread is None
    assert threading.active_count() == threads_before
    orchestrator.close()


def test_register_then_has_and_get(orchestrator: PluginOrchestrator) -> None:
    """A registered workflow is reported by `has_workflow` and returned by `get_workflow`."""
    workflow = _workflow("etl")
    result = orchestrator.register_workflow(workflow)
    assert result
    assert result.value() is None
    assert orchestrator.has_workflow("etl")
    assert orchestrator.get_workflow("etl").value() == workflow


def test_unknown_workflow_is_not_found(orchestrator: PluginOrchestrator) -> None:
    """`has_workflow` is false and `get_workflow` is ``NotFound`` naming the id for an
    unknown workflow."""
    assert not orchestrator.has_workflow("missing")
    result = orchestrator.get_workflow("missing")
    assert not result
    assert result.error().code is PluginErrorCode.NotFound
    assert "'missing'" in result.error().message


def test_unregister_forgets_the_workflow(orchestrator: PluginOrchestrator) -> None:
    """`unregister_workflow` removes the workflow, and its id can be registered again."""
    assert orchestrator.register_workflow(_workflow("etl"))
    assert orchestrator.unregister_workflow("etl")
    assert not orchestrator.has_workflow("etl")
    assert orchestrator.list_workflows() == []
    assert orchestrator.register_workflow(_workflow("etl"))


def test_unregister_unknown_workflow_is_not_found(orchestrator: PluginOrchestrator) -> None:
    """Unregistering an id that is not registered is ``NotFound`` naming the id."""
    result = orchestrator.unregister_workflow("missing")
    assert not result
    assert result.error().code is PluginErrorCode.NotFound
    assert "'missing'" in result.error().message


def test_list_workflows_in_registration_order(orchestrator: PluginOrchestrator) -> None:
    """`list_workflows` returns the ids in registration order, as a new list."""
    for workflow_id in ("zeta", "alpha", "mid"):
        assert orchestrator.register_workflow(_workflow(workflow_id))
    assert orchestrator.unregister_workflow("alpha")
    assert orchestrator.register_workflow(_workflow("alpha"))
    listed = orchestrator.list_workflows()
    assert listed == ["zeta", "mid", "alpha"]
    listed.clear()
    assert orchestrator.list_workflows() == ["zeta", "mid", "alpha"]


def test_clear_workflows_forgets_everything(orchestrator: PluginOrchestrator) -> None:
    """`clear_workflows` returns ``None`` and leaves no workflow registered."""
    for workflow_id in ("a", "b"):
        assert orchestrator.register_workflow(_workflow(workflow_id))
    assert orchestrator.clear_workflows() is None  # type: ignore[func-returns-value]
    assert orchestrator.list_workflows() == []
    assert not orchestrator.has_workflow("a")


@pytest.mark.parametrize("call", ["get_workflow", "unregister_workflow"])
def test_non_string_workflow_id_is_a_type_error(
    orchestrator: PluginOrchestrator, call: str
) -> None:
    """A workflow id that is not a string is a caller bug, so it raises `TypeError` (SPEC 2)."""
    with pytest.raises(TypeError, match="workflow_id"):
        getattr(orchestrator, call)(123)


@pytest.mark.parametrize(
    "query", ["get_workflow_status", "get_workflow_results", "cancel_workflow"]
)
def test_queries_about_unknown_executions_do_not_start_the_engine(
    orchestrator: PluginOrchestrator, query: str
) -> None:
    """Before anything ran, asking about an execution answers ``NotFound`` without a thread."""
    result = getattr(orchestrator, query)("exec-1")
    assert not result
    assert result.error().code is PluginErrorCode.NotFound
    assert orchestrator.list_executions() == []


def test_async_engine_registry_works_outside_its_event_loop() -> None:
    """`AsyncPluginOrchestrator`'s registry methods are plain calls usable before
    ``async with``."""
    engine = AsyncPluginOrchestrator(PluginManager())
    assert engine.register_workflow(_workflow("etl"))
    assert engine.list_workflows() == ["etl"]
    assert engine.get_workflow("etl").value() == _workflow("etl")
    assert engine.unregister_workflow("etl")
    assert not engine.has_workflow("etl")


def test_facade_and_engine_share_one_registry() -> None:
    """What the facade registers is what its engine will execute, and the reverse."""
    with PluginOrchestrator(PluginManager()) as orchestrator:
        assert orchestrator.register_workflow(_workflow("from_facade"))
        assert orchestrator.engine.register_workflow(_workflow("from_engine"))
        assert orchestrator.engine.list_workflows() == ["from_facade", "from_engine"]
        assert orchestrator.list_workflows() == ["from_facade", "from_engine"]
