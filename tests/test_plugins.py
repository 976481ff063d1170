"""Plugins: the `PluginManager` registry, loading and discovery, and how a step's method
is found and its arguments bound (``_binding.py``)."""

import functools
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional, cast

import attrs
import pytest

import qtforge
from qtforge import Plugin, PluginError, PluginErrorCode, PluginManager
from qtforge.orchestration import AsyncPluginOrchestrator, PluginOrchestrator, StepContext
from qtforge.orchestration._binding import Binder, BinderCache, make_binder, resolve

# -- plugin objects used below -----------------------------------------------------


class Named:
    """A plugin identified by whichever of ``plugin_id``, ``id`` or ``name`` it is given."""

    def __init__(self, **attributes: str) -> None:
        for attribute, value in attributes.items():
            setattr(self, attribute, value)


# -- PluginManager registry --------------------------------------------------------


def test_register_under_an_explicit_id() -> None:
    """``register_plugin(plugin, plugin_id=...)`` registers it under that id and returns it."""
    manager = PluginManager()
    plugin = Named(name="ignored")
    result = manager.register_plugin(plugin, plugin_id="loader")
    assert result.value() == "loader"
    assert manager.get_plugin("loader").value() is plugin
    assert not manager.has_plugin("ignored")


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"plugin_id": "by_plugin_id", "id": "by_id", "name": "by_name"}, "by_plugin_id"),
        ({"id": "by_id", "name": "by_name"}, "by_id"),
        ({"name": "by_name"}, "by_name"),
        ({"plugin_id": "", "name": "by_name"}, "by_name"),
    ],
)
def test_id_comes_from_plugin_id_then_id_then_name(
    attributes: dict[str, str], expected: str
) -> None:
    """Without ``plugin_id=``, the id is the plugin's (non-empty) ``plugin_id``, ``id`` or
    ``name`` attribute, in that order."""
    manager = PluginManager()
    assert manager.register_plugin(Named(**attributes)).value() == expected
    assert manager.list_plugins() == [expected]


def test_plugin_without_an_id_is_refused() -> None:
    """A plugin with no id anywhere is refused with ``InvalidArgument`` saying how to fix it."""
    manager = PluginManager()
    result = manager.register_plugin(object())
    assert result.error().code is PluginErrorCode.InvalidArgument
    assert "plugin_id=" in result.error().message
    assert manager.list_plugins() == []


def test_duplicate_id_is_refused_and_keeps_the_first() -> None:
    """Registering a second plugin under a taken id is ``DuplicatePlugin``; the first stays."""
    manager = PluginManager()
    first = Named(name="loader")
    assert manager.register_plugin(first)
    result = manager.register_plugin(Named(name="loader"))
    assert result.error().code is PluginErrorCode.DuplicatePlugin
    assert "'loader'" in result.error().message
    assert manager.get_plugin("loader").value() is first


def test_plugin_id_must_be_a_string() -> None:
    """A non-string ``plugin_id=`` is a caller bug: `TypeError`."""
    with pytest.raises(TypeError, match="plugin_id"):
        PluginManager().register_plugin(Named(), plugin_id=7)  # type: ignore[arg-type]


def test_unregister_get_has_and_list() -> None:
    """`unregister_plugin` removes a plugin; `get`/`has`/`list` reflect it, in
    registration order."""
    manager = PluginManager()
    for name in ("zeta", "alpha", "mid"):
        assert manager.register_plugin(Named(name=name))
    assert manager.list_plugins() == ["zeta", "alpha", "mid"]
    assert manager.unregister_plugin("alpha")
    assert manager.list_plugins() == ["zeta", "mid"]
    assert not manager.has_plugin("alpha")
    assert manager.get_plugin("alpha").error().code is PluginErrorCode.PluginNotFound


def test_unknown_plugin_is_plugin_not_found() -> None:
    """Getting or unregistering an unknown id is ``PluginNotFound`` naming the id."""
    manager = PluginManager()
    for result in (manager.get_plugin("ghost"), manager.unregister_plugin("ghost")):
        assert result.error().code is PluginErrorCode.PluginNotFound
        assert "'ghost'" in result.error().message


# -- the optional Plugin base class ------------------------------------------------


class Greeter(Plugin):
    plugin_id = "greeter"

    def greet(self, who: str) -> str:
        return f"hello {who}"


def test_plugin_base_gives_an_id_and_no_op_hooks() -> None:
    """A `Plugin` subclass registers under its ``plugin_id``; the default hooks do nothing."""
    plugin = Greeter()
    assert PluginManager().register_plugin(plugin).value() == "greeter"
    assert plugin.initialize() is None
    assert plugin.shutdown() is None


def test_plugin_base_without_an_id_is_refused() -> None:
    """A bare `Plugin` has an empty ``plugin_id``, so it needs ``plugin_id=``."""
    manager = PluginManager()
    assert manager.register_plugin(Plugin()).error().code is PluginErrorCode.InvalidArgument
    assert manager.register_plugin(Plugin(), plugin_id="bare")


# -- throwaway modules and distributions -------------------------------------------


PLUGIN_MODULE = """
class Loader:
    plugin_id = "loader_by_attribute"

    def load(self, path):
        return {"path": path}


class NeedsArguments:
    def __init__(self, required):
        self.required = required


class Outer:
    class Inner:
        name = "inner"


class Service:
    name = "service"


SHARED = Service()
"""


@attrs.frozen
class Sandbox:
    """Writes modules and distributions into a temporary directory on ``sys.path``."""

    root: Path
    modules: list[str] = attrs.field(factory=list)

    def module(self, name: str, source: str = PLUGIN_MODULE) -> str:
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        return name

    def distribution(self, name: str, entry_points: dict[str, str]) -> None:
        """A ``<name>-1.0.dist-info`` declaring `entry_points` in ``qtforge.plugins``."""
        info = self.root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = [f"{ep_name} = {value}" for ep_name, value in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(["[qtforge.plugins]", *lines, ""]))


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A temporary directory on ``sys.path``; its modules are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    sandbox = Sandbox(tmp_path)
    yield sandbox
    for name in sandbox.modules:
        sys.modules.pop(name, None)


# -- load_plugin -------------------------------------------------------------------


def test_load_plugin_instantiates_a_class(sandbox: Sandbox) -> None:
    """``load_plugin("module:Class")`` registers an instance under the id it declares."""
    module = sandbox.module("qtf_load_class")
    manager = PluginManager()
    assert manager.load_plugin(f"{module}:Loader").value() == "loader_by_attribute"
    plugin = manager.get_plugin("loader_by_attribute").value()
    assert type(plugin).__name__ == "Loader"
    assert plugin.load("in.csv") == {"path": "in.csv"}  # type: ignore[attr-defined]


def test_load_plugin_uses_an_object_as_it_is(sandbox: Sandbox) -> None:
    """``load_plugin("module:obj")`` registers that very object."""
    module = sandbox.module("qtf_load_object")
    manager = PluginManager()
    assert manager.load_plugin(f"{module}:SHARED").value() == "service"
    assert manager.get_plugin("service").value() is sys.modules[module].SHARED


def test_load_plugin_with_an_explicit_id(sandbox: Sandbox) -> None:
    """``load_plugin(reference, plugin_id)`` registers under the id given."""
    module = sandbox.module("qtf_load_id")
    manager = PluginManager()
    assert manager.load_plugin(f"{module}:Loader", "csv_loader").value() == "csv_loader"
    assert manager.list_plugins() == ["csv_loader"]


def test_load_plugin_follows_a_dotted_attribute(sandbox: Sandbox) -> None:
    """The attribute part may be dotted (``module:Outer.Inner``)."""
    module = sandbox.module("qtf_load_dotted")
    assert PluginManager().load_plugin(f"{module}:Outer.Inner").value() == "inner"


@pytest.mark.parametrize("reference", ["qtf_load_forms", "qtf_load_forms:", ":Loader", ""])
def test_load_plugin_rejects_malformed_references(sandbox: Sandbox, reference: str) -> None:
    """A reference not of the form ``module:attribute`` is ``InvalidArgument`` showing
    the expected form."""
    sandbox.module("qtf_load_forms")
    result = PluginManager().load_plugin(reference)
    assert result.error().code is PluginErrorCode.InvalidArgument
    assert "package.module:attribute" in result.error().message


def test_load_plugin_reports_a_missing_module() -> None:
    """A module that cannot be imported is ``LoadFailed`` naming the module."""
    result = PluginManager().load_plugin("qtf_no_such_module:Thing")
    assert result.error().code is PluginErrorCode.LoadFailed
    assert "'qtf_no_such_module'" in result.error().message
    assert "ModuleNotFoundError" in result.error().details


def test_load_plugin_reports_a_module_that_fails_to_import(sandbox: Sandbox) -> None:
    """A module raising at import time is ``LoadFailed`` with the exception in the details."""
    module = sandbox.module("qtf_load_broken", "raise RuntimeError('no config')\n")
    result = PluginManager().load_plugin(f"{module}:Thing")
    assert result.error().code is PluginErrorCode.LoadFailed
    assert "no config" in result.error().details


def test_load_plugin_reports_a_missing_attribute(sandbox: Sandbox) -> None:
    """A module without the attribute is ``SymbolNotFound`` naming module and attribute."""
    module = sandbox.module("qtf_load_missing_attr")
    result = PluginManager().load_plugin(f"{module}:Nope")
    assert result.error().code is PluginErrorCode.SymbolNotFound
    assert f"'{module}'" in result.error().message
    assert "'Nope'" in result.error().message


def test_load_plugin_reports_a_class_that_needs_arguments(sandbox: Sandbox) -> None:
    """A class that cannot be built with no arguments is ``InitializationFailed``."""
    module = sandbox.module("qtf_load_needs_args")
    result = PluginManager().load_plugin(f"{module}:NeedsArguments")
    assert result.error().code is PluginErrorCode.InitializationFailed
    assert "NeedsArguments" in result.error().message


def test_load_plugin_reference_must_be_a_string() -> None:
    """A reference that is not a string is a caller bug: `TypeError` (SPEC 2)."""
    with pytest.raises(TypeError, match="reference"):
        PluginManager().load_plugin(42)  # type: ignore[arg-type]


# -- discover_plugins --------------------------------------------------------------


def test_discovery_registers_entry_points_by_name(sandbox: Sandbox) -> None:
    """Each ``qtforge.plugins`` entry point is registered under the entry point's name;
    a class is instantiated, any other object is used as it is."""
    module = sandbox.module("qtf_discover_ok")
    sandbox.distribution(
        "qtf-discover-ok", {"csv_loader": f"{module}:Loader", "shared": f"{module}:SHARED"}
    )
    manager = PluginManager()
    found = manager.discover_plugins()
    assert {"csv_loader", "shared"} <= set(found)
    assert type(manager.get_plugin("csv_loader").value()).__name__ == "Loader"
    assert manager.get_plugin("shared").value() is sys.modules[module].SHARED
    assert not manager.has_plugin("loader_by_attribute")


def test_discovery_skips_broken_entry_points_with_a_warning(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry point that cannot be loaded or instantiated is skipped with a warning on
    the ``qtforge.plugins`` logger, and the others still load."""
    module = sandbox.module("qtf_discover_mixed")
    sandbox.distribution(
        "qtf-discover-mixed",
        {
            "before": f"{module}:Loader",
            "missing_module": "qtf_no_such_module:Thing",
            "missing_attribute": f"{module}:Nope",
            "needs_arguments": f"{module}:NeedsArguments",
            "after": f"{module}:SHARED",
        },
    )
    manager = PluginManager()
    with caplog.at_level(logging.WARNING, logger="qtforge.plugins"):
        found = manager.discover_plugins()
    assert {"before", "after"} <= set(found)
    broken = {"missing_module", "missing_attribute", "needs_arguments"}
    assert not broken & set(manager.list_plugins())
    warned = " ".join(r.getMessage() for r in caplog.records if r.name == "qtforge.plugins")
    for name in broken:
        assert f"'{name}'" in warned


def test_discovery_keeps_plugins_already_registered(sandbox: Sandbox) -> None:
    """An entry point whose name is already registered leaves that plugin in place and is
    not reported as found."""
    module = sandbox.module("qtf_discover_taken")
    sandbox.distribution("qtf-discover-taken", {"csv_loader": f"{module}:Loader"})
    manager = PluginManager()
    mine = Named()
    assert manager.register_plugin(mine, plugin_id="csv_loader")
    assert "csv_loader" not in manager.discover_plugins()
    assert manager.get_plugin("csv_loader").value() is mine


def test_manager_discovers_only_when_asked(sandbox: Sandbox) -> None:
    """``PluginManager()`` starts empty; ``PluginManager(discover=True)`` discovers."""
    module = sandbox.module("qtf_discover_flag")
    sandbox.distribution("qtf-discover-flag", {"flagged": f"{module}:SHARED"})
    assert not PluginManager().has_plugin("flagged")
    assert PluginManager(discover=True).has_plugin("flagged")


@pytest.mark.parametrize(
    "make",
    [
        PluginOrchestrator,
        qtforge.create_orchestrator,
        qtforge.orchestration.create_orchestrator,
        AsyncPluginOrchestrator,
    ],
)
def test_orchestrator_without_a_manager_discovers_plugins(
    sandbox: Sandbox, make: Callable[[], Any]
) -> None:
    """An orchestrator made without a plugin manager makes one that has discovered the
    entry-point plugins, exposed as ``plugin_manager``."""
    module = sandbox.module("qtf_discover_default")
    sandbox.distribution("qtf-discover-default", {"csv_loader": f"{module}:Loader"})
    orchestrator = make()
    assert isinstance(orchestrator.plugin_manager, PluginManager)
    assert orchestrator.plugin_manager.has_plugin("csv_loader")


def test_orchestrator_uses_the_manager_it_is_given(sandbox: Sandbox) -> None:
    """An orchestrator given a manager uses that very manager, without discovering."""
    module = sandbox.module("qtf_discover_given")
    sandbox.distribution("qtf-discover-given", {"csv_loader": f"{module}:Loader"})
    manager = PluginManager()
    with PluginOrchestrator(manager) as orchestrator:
        assert orchestrator.plugin_manager is manager
    assert AsyncPluginOrchestrator(manager).plugin_manager is manager
    assert manager.list_plugins() == []


def test_orchestrator_rejects_a_manager_of_the_wrong_type() -> None:
    """Passing something other than a `PluginManager` is a caller bug: `TypeError`."""
    with pytest.raises(TypeError, match="PluginManager"):
        PluginOrchestrator({"csv_loader": object()})  # type: ignore[arg-type]


# -- finding the method: resolve() -------------------------------------------------


class Calculator:
    scale = 10

    def add(self, a: int, b: int = 1) -> int:
        return a + b


class QtStylePlugin:
    """A QtForge-style plugin: one ``execute_command(command, params)`` entry point."""

    def execute_command(self, command: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"command": command, "params": params}

    def status(self) -> str:
        return "ready"


def _resolve(plugin: object, method_name: str) -> tuple[Callable[..., Any], Binder]:
    manager = PluginManager()
    manager.register_plugin(plugin, plugin_id="p")
    found, method, binder = resolve(manager, BinderCache(), "p", method_name)
    assert found is plugin
    return method, binder


def _call(method: Callable[..., Any], binder: Binder, inputs: dict[str, Any]) -> Any:
    args, kwargs = binder.bind(inputs, CONTEXT)
    return method(*args, **kwargs)


def test_resolve_finds_the_named_method() -> None:
    """A step's method is ``getattr(plugin, method_name)``, named ``plugin.method()``."""
    method, binder = _resolve(Calculator(), "add")
    assert _call(method, binder, {"a": 2, "b": 3}) == 5
    assert binder.where == "p.add()"


def test_resolve_falls_back_to_execute_command() -> None:
    """A plugin without the method but with ``execute_command`` gets the method name and
    the whole input mapping."""
    method, binder = _resolve(QtStylePlugin(), "transform")
    inputs = {"operation": "normalize", "rows": 3}
    assert _call(method, binder, inputs) == {"command": "transform", "params": inputs}
    assert "execute_command('transform')" in binder.where


def test_a_real_method_wins_over_execute_command() -> None:
    """``execute_command`` is only a fallback: an existing method is called directly."""
    method, binder = _resolve(QtStylePlugin(), "status")
    assert _call(method, binder, {"ignored": 1}) == "ready"


def test_unknown_plugin_is_plugin_not_found_listing_the_registered() -> None:
    """An unknown plugin id is ``PluginNotFound``, naming it and the registered ids."""
    manager = PluginManager()
    manager.register_plugin(Calculator(), plugin_id="calc")
    with pytest.raises(PluginError) as caught:
        resolve(manager, BinderCache(), "ghost", "add")
    assert caught.value.code is PluginErrorCode.PluginNotFound
    assert "'ghost'" in caught.value.message
    assert "'calc'" in caught.value.message


@pytest.mark.parametrize(
    ("method_name", "reason"), [("divide", "does not exist"), ("scale", "not callable")]
)
def test_unknown_method_is_command_not_found(method_name: str, reason: str) -> None:
    """A missing or non-callable method is ``CommandNotFound`` naming plugin and method."""
    with pytest.raises(PluginError) as caught:
        _resolve(Calculator(), method_name)
    assert caught.value.code is PluginErrorCode.CommandNotFound
    assert "'p'" in caught.value.message
    assert f"'{method_name}'" in caught.value.message
    assert reason in caught.value.message


# -- binding arguments: make_binder() / Binder.bind() ------------------------------

CONTEXT = cast(StepContext, object())
"""Stands in for the step's context: binding only passes it along."""


def _bind(fn: Callable[..., Any], inputs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return make_binder(fn, "p.m()").bind(inputs, CONTEXT)


def test_parameters_are_bound_by_name_and_extra_keys_ignored() -> None:
    """Each declared parameter takes the input of the same name; other keys are left out."""

    def method(a: int, b: int, *, c: int) -> None: ...

    assert _bind(method, {"c": 3, "a": 1, "b": 2, "unused": 0}) == ((), {"a": 1, "b": 2, "c": 3})


def test_absent_keys_leave_defaults_in_place() -> None:
    """A parameter with a default and no input is not passed, so its default applies."""

    def method(a: int, b: int = 10) -> int:
        return a + b

    assert _bind(method, {"a": 1}) == ((), {"a": 1})
    assert _call(method, make_binder(method, "p.m()"), {"a": 1}) == 11


def test_var_keyword_receives_every_key() -> None:
    """A ``**kwargs`` method receives every input key."""

    def method(a: int, **rest: Any) -> None: ...

    inputs = {"a": 1, "b": 2, "file_path": "x.csv"}
    assert _bind(method, inputs) == ((), inputs)


def _annotated_context(ctx: StepContext, a: int) -> None: ...


def _string_annotated_context(ctx: "StepContext", a: int) -> None: ...


def _optional_context(ctx: StepContext | None, a: int) -> None: ...


def _string_optional_context(ctx: "StepContext | None", a: int) -> None: ...


def _typing_optional_context(ctx: Optional[StepContext], a: int) -> None:  # noqa: UP045
    ...


def _context_by_name(context, a: int) -> None:  # type: ignore[no-untyped-def]
    ...


@pytest.mark.parametrize(
    "method",
    [
        _annotated_context,
        _string_annotated_context,
        _optional_context,
        _string_optional_context,
        _typing_optional_context,
        _context_by_name,
    ],
    ids=lambda fn: fn.__name__.lstrip("_"),
)
def test_context_parameter_receives_the_step_context(method: Callable[..., Any]) -> None:
    """A parameter annotated `StepContext` (also optionally, or as a string) or named
    ``context`` receives the step context, even over an input key of that name."""
    name = "context" if method is _context_by_name else "ctx"
    binder = make_binder(method, "p.m()")
    assert binder.context_name == name
    assert binder.bind({"a": 1, name: "an input"}, CONTEXT) == ((), {"a": 1, name: CONTEXT})


def test_context_parameter_is_never_required() -> None:
    """A method asking only for the context binds with an empty input mapping."""

    def method(context: StepContext) -> None: ...

    assert _bind(method, {}) == ((), {"context": CONTEXT})


def test_context_also_reaches_var_keyword_methods() -> None:
    """A method with a context parameter and ``**kwargs`` gets the context and every key."""

    def method(context: StepContext, **rest: Any) -> None: ...

    assert _bind(method, {"a": 1}) == ((), {"a": 1, "context": CONTEXT})


def test_missing_required_parameter_is_invalid_parameters() -> None:
    """A required parameter with no input is ``InvalidParameters`` naming the method, the
    parameter, and the keys that were available."""

    def method(path: str, mode: str, encoding: str = "utf-8") -> None: ...

    with pytest.raises(PluginError) as caught:
        _bind(method, {"mode": "r", "rows": 3})
    assert caught.value.code is PluginErrorCode.InvalidParameters
    message = caught.value.message
    assert "p.m()" in message
    assert "'path'" in message
    assert "mode, rows" in message


def test_missing_parameter_with_no_inputs_says_none_were_available() -> None:
    """With an empty input mapping, the error says no keys were available."""

    def method(path: str) -> None: ...

    with pytest.raises(PluginError, match="available keys: none"):
        _bind(method, {})


def test_positional_only_parameters_are_passed_by_position() -> None:
    """Positional-only parameters are filled by position from the keys of their names."""

    def method(a: int, b: int = 2, /, c: int = 3) -> tuple[int, int, int]:
        return (a, b, c)

    assert _bind(method, {"a": 1, "b": 20, "c": 30}) == ((1, 20), {"c": 30})
    assert _call(method, make_binder(method, "p.m()"), {"a": 1}) == (1, 2, 3)


def test_positional_only_context_is_passed_by_position() -> None:
    """A positional-only context parameter receives the context by position."""

    def method(ctx: StepContext, a: int, /) -> None: ...

    assert _bind(method, {"a": 1}) == ((CONTEXT, 1), {})


def test_bound_methods_do_not_ask_for_self() -> None:
    """Binding a plugin's bound method never asks for ``self``."""
    assert make_binder(Calculator().add, "p.add()").required == frozenset({"a"})


async def _async_method(a: int) -> int:
    return a


class _AsyncCallable:
    async def __call__(self, a: int) -> int:
        return a


@pytest.mark.parametrize(
    ("fn", "is_async"),
    [
        (_async_method, True),
        (functools.partial(_async_method, a=1), True),
        (_AsyncCallable(), True),
        (Calculator().add, False),
        (len, False),
    ],
    ids=["async-def", "partial", "async-callable", "sync-method", "builtin"],
)
def test_binder_tells_async_methods_from_sync_ones(fn: Callable[..., Any], is_async: bool) -> None:
    """Coroutine functions (also behind a partial or ``__call__``) run on the loop; the
    rest in threads."""
    assert make_binder(fn, "p.m()").is_async is is_async


def test_binder_cache_inspects_each_method_once() -> None:
    """The cache returns the same binder for the same method of any instance."""
    cache = BinderCache()
    first = cache.get(Calculator().add, "p.add()")
    assert cache.get(Calculator().add, "p.add()") is first
