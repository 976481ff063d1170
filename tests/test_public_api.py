"""The public surface: exactly these names, importable from public modules only."""

from __future__ import annotations

import importlib.metadata
import inspect
import subprocess
import sys
import types
import typing
from collections.abc import Callable, Iterator

import pytest

import qtforge
import qtforge.executors
import qtforge.orchestration
import qtforge.orchestration.events
import qtforge.store

PUBLIC_NAMES: dict[types.ModuleType, list[str]] = {
    qtforge: [
        "Expected",
        "Plugin",
        "PluginError",
        "PluginErrorCode",
        "PluginManager",
        "__version__",
        "create_orchestrator",
        "executors",
        "orchestration",
        "store",
    ],
    qtforge.executors: [
        "AsyncExecutor",
        "DaskExecutor",
        "Executor",
        "ProcessExecutor",
        "RemoteTraceback",
        "StepCall",
        "ThreadExecutor",
    ],
    qtforge.orchestration: [
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
    ],
    qtforge.orchestration.events: [
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
    ],
    qtforge.store: [
        "ExecutionStore",
        "JSONSerializer",
        "MemoryStore",
        "SQLiteStore",
        "Serializer",
        "StoreError",
    ],
}

MODULES = pytest.mark.parametrize("module", PUBLIC_NAMES, ids=lambda module: module.__name__)


@MODULES
def test_all_is_pinned_and_sorted(module: types.ModuleType) -> None:
    """Each public module's ``__all__`` is exactly the agreed, sorted list of names."""
    assert module.__all__ == PUBLIC_NAMES[module]
    assert module.__all__ == sorted(module.__all__)


@MODULES
def test_every_listed_name_is_defined_in_the_public_module(module: types.ModuleType) -> None:
    """Every name in ``__all__`` is an attribute of the public module, and a star import
    brings in exactly those names."""
    for name in module.__all__:
        assert hasattr(module, name), name
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == module.__all__


@MODULES
def test_no_unlisted_public_attributes(module: types.ModuleType) -> None:
    """A public module has no public attribute missing from its ``__all__``."""
    public = {name for name in vars(module) if not name.startswith("_")}
    assert public <= set(module.__all__)


def test_seed_spellings_all_resolve() -> None:
    """The spellings used by the seed document and SPEC section 1 resolve to one object."""
    assert qtforge.create_orchestrator is qtforge.orchestration.create_orchestrator
    assert qtforge.orchestration.events is qtforge.orchestration.events


def test_version_is_the_installed_distribution_version() -> None:
    """``qtforge.__version__`` is a string equal to the installed distribution's version."""
    assert isinstance(qtforge.__version__, str)
    assert qtforge.__version__ == importlib.metadata.version("qtforge")


# -- nothing public lives only in a private module ---------------------------------


def _exported() -> dict[object, str]:
    """Every exported object, with its public spelling."""
    found: dict[object, str] = {}
    for module in PUBLIC_NAMES:
        for name in module.__all__:
            found.setdefault(getattr(module, name), f"{module.__name__}.{name}")
    return found


def _classes_in(hint: object) -> Iterator[type]:
    """The classes a type hint mentions, through unions, generics and callables."""
    if isinstance(hint, list):
        for item in hint:
            yield from _classes_in(item)
        return
    if isinstance(hint, type) and not typing.get_args(hint):
        yield hint
    origin = typing.get_origin(hint)
    if isinstance(origin, type):
        yield origin
    for argument in typing.get_args(hint):
        yield from _classes_in(argument)


def _public_callables(owner: type) -> Iterator[tuple[str, Callable[..., object]]]:
    """The constructor, public methods and property getters qtforge defines on `owner`."""
    for klass in owner.__mro__:
        if not klass.__module__.startswith("qtforge"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(member, property) and member.fget is not None:
                yield name, member.fget
            elif isinstance(member, staticmethod | classmethod):
                yield name, member.__func__
            elif inspect.isfunction(member):
                yield name, member


def _signature_hints() -> Iterator[tuple[str, object]]:
    """Every type hint in the signatures and public fields of the exported API."""
    for obj, spelling in _exported().items():
        if inspect.isfunction(obj):
            yield from ((spelling, hint) for hint in typing.get_type_hints(obj).values())
        if not isinstance(obj, type):
            continue
        for name, hint in typing.get_type_hints(obj).items():
            if not name.startswith("_"):
                yield f"{spelling}.{name}", hint
        for name, member in _public_callables(obj):
            for hint in typing.get_type_hints(member).values():
                yield f"{spelling}.{name}", hint


def test_classes_in_public_signatures_are_exported() -> None:
    """Every qtforge class that a public signature or field mentions is itself exported,
    so users never need to import from a private module."""
    exported = _exported()
    private = {
        f"{klass.__module__}.{klass.__qualname__} (in {where})"
        for where, hint in _signature_hints()
        for klass in _classes_in(hint)
        if klass.__module__.startswith("qtforge") and klass not in exported
    }
    assert sorted(private) == []


def test_exported_classes_live_in_qtforge() -> None:
    """The exported classes are qtforge's own, not re-exports of another library's."""
    for obj, spelling in _exported().items():
        if isinstance(obj, type):
            assert obj.__module__.startswith("qtforge."), spelling


# -- import cost -------------------------------------------------------------------


def test_import_does_not_pull_in_heavy_or_test_dependencies() -> None:
    """``import qtforge`` imports neither trio, hypothesis, dask nor pytest."""
    heavy = ("trio", "hypothesis", "dask", "distributed", "pytest")
    script = (
        f"import sys, qtforge\nprint(','.join(name for name in {heavy!r} if name in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert run.stdout.strip() == ""
