"""Checking a workflow file's data: every problem at once, each pointing at its field.

The data is what a safe parser made of the file (plain dicts, lists and scalars). It is
checked against the JSON Schema that ships with qtforge, then for what a schema cannot
say (unknown or cyclic dependencies, condition syntax, the builders' own validators),
then, when a plugin manager is given, for plugins and methods that do not exist. Each
check adds its problems to a `Report` (``_fileproblems.py``).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import attrs

from .._errors import PluginError, PluginErrorCode
from .._plugins import ENTRY_POINT_GROUP, PluginManager, _load_entry_point
from ._binding import BinderCache, resolve
from ._conditions import compile_condition
from ._fileproblems import Path, Report, suggest
from ._model import ExecutionMode
from ._spec import _find_cycle, _topological_order
from ._workflow import Workflow, WorkflowStep

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "FILE_NAMES",
    "build_workflow",
    "check_graph",
    "check_plugins",
    "check_schema",
    "step_file_fields",
    "workflow_schema",
]

FILE_NAMES = {"step_id": "id", "plugin_id": "plugin", "method_name": "method"}
"""`WorkflowStep` fields spelled differently in files; the others keep their names."""

_CODE_ONLY = frozenset({"retry_on"})
"""`WorkflowStep` fields that hold code, which a file cannot."""


def step_file_fields() -> dict[str, str]:
    """File field name -> `WorkflowStep` attribute, for every field a file may hold.

    Derived from the class, so a field added to `WorkflowStep` is a file field too.
    """
    return {
        FILE_NAMES.get(field.name, field.name): field.name
        for field in attrs.fields(WorkflowStep)
        if field.name not in _CODE_ONLY
    }


@functools.cache
def workflow_schema() -> dict[str, Any]:
    """The shipped JSON Schema, plus any `WorkflowStep` field it does not describe yet
    (accepted as any value; the builder's validator checks it)."""
    source = importlib.resources.files("qtforge").joinpath("schema", "workflow.schema.json")
    schema: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    properties = schema["$defs"]["step"]["properties"]
    for name in step_file_fields():
        properties.setdefault(name, {})
    return schema


# -- the schema --------------------------------------------------------------------

_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
    "object": "a mapping",
    "array": "a list",
}


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    kind = {str: "the string", bool: "", int: "the integer", float: "the number"}
    return f"{kind.get(type(value), f'the {type(value).__name__}')} {value!r}".lstrip()


def check_schema(report: Report) -> None:
    """Add a problem for every place where the data breaks the workflow schema."""
    import jsonschema  # here, so that importing qtforge does not pay for it

    validator = jsonschema.Draft202012Validator(workflow_schema())
    for error in validator.iter_errors(report.data):
        _report_schema_error(report, error)


def _report_schema_error(report: Report, error: jsonschema.ValidationError) -> None:
    path: Path = tuple(error.absolute_path)
    kind, value = error.validator, error.instance
    expected: Any = error.validator_value
    schema: Any = error.schema
    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        for key in value:
            if key not in known:
                report.add((*path, key), f"unknown field {key!r}{suggest(str(key), known)}")
    elif kind == "required" and isinstance(value, dict):
        for key in expected:
            if key not in value:
                report.add(path, f"missing required field {key!r}")
    elif kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
        report.add(path, f"must be {wanted}, not {_describe(value)}")
    elif kind == "enum":
        choices = ", ".join(repr(choice) for choice in expected)
        report.add(path, f"must be one of {choices}, not {value!r}")
    elif kind in ("minimum", "maximum"):
        bound = ">=" if kind == "minimum" else "<="
        report.add(path, f"must be {bound} {expected}, not {value!r}")
    elif kind == "minLength":
        report.add(path, "must not be empty")
    elif kind == "minItems":
        report.add(path, "must list at least one step")
    elif kind == "oneOf" and isinstance(value, dict):  # a {id, load} plugin entry
        for suberror in error.context or ():
            if suberror.validator != "type":
                _report_schema_error(report, suberror)
    elif kind in ("oneOf", "pattern"):
        report.add(
            path,
            "must be an entry-point name, a 'package.module:attribute' reference, or a "
            f"mapping with 'id' and 'load', not {_describe(value)}",
        )
    else:
        report.add(path, error.message)


# -- what the schema cannot say, and building the workflow -------------------------


def _steps(data: object) -> list[tuple[int, dict[str, Any]]]:
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(steps, list):
        return []
    return [(i, step) for i, step in enumerate(steps) if isinstance(step, dict)]


def check_graph(report: Report) -> None:
    """Duplicate step ids, dependencies on unknown steps, cycles, condition syntax."""
    index: dict[str, int] = {}
    for i, step in _steps(report.data):
        step_id = step.get("id")
        if not isinstance(step_id, str):
            continue
        first = index.setdefault(step_id, i)
        if first != i:
            report.add(("steps", i, "id"), f"step id {step_id!r} is also used by steps[{first}]")
    deps: list[tuple[int, ...]] = []
    dependents: list[list[int]] = [[] for _ in index]
    places = {i: place for place, i in enumerate(index.values())}  # steps with unique ids
    for i, step in _steps(report.data):
        step_id, names = step.get("id"), step.get("dependencies", [])
        if not isinstance(step_id, str) or index[step_id] != i:
            continue
        own: list[int] = []
        for j, name in enumerate(names if isinstance(names, list) else []):
            if not isinstance(name, str):
                continue
            if name == step_id:
                report.add(
                    ("steps", i, "dependencies", j),
                    f"step {step_id!r} depends on itself: {step_id} -> {step_id}",
                    PluginErrorCode.CircularDependency,
                )
            elif name not in index:
                report.add(
                    ("steps", i, "dependencies", j),
                    f"step {step_id!r} depends on {name!r}, which is not a step"
                    f"{suggest(name, list(index))}",
                    PluginErrorCode.DependencyMissing,
                )
            elif places[index[name]] not in own:
                own.append(places[index[name]])
                dependents[places[index[name]]].append(places[i])
        deps.append(tuple(own))
    if len(deps) == len(index):
        _check_cycles(report, list(index.items()), deps, dependents)
    for step_id, step in _rollbacks(report.data):
        if step_id not in index:
            report.add(
                ("rollback_steps", step_id),
                f"rollback step for {step_id!r}, which is not a step"
                f"{suggest(step_id, list(index))}",
            )
        for key in ("dependencies", "condition"):
            if step.get(key):
                report.add(("rollback_steps", step_id, key), f"a rollback step has no {key}")
    for i, step in _steps(report.data):
        condition = step.get("condition")
        if isinstance(condition, str):
            try:
                compile_condition(condition, f"step {step.get('id')!r}")
            except PluginError as error:
                report.add(("steps", i, "condition"), error.message)


def _check_cycles(
    report: Report,
    steps: list[tuple[str, int]],
    deps: list[tuple[int, ...]],
    dependents: list[list[int]],
) -> None:
    """Report one cycle, if any; `steps` are (id, index in the file) by place in `deps`."""
    order = _topological_order(deps, dependents)
    if len(order) == len(steps):
        return
    cycle = _find_cycle(deps, set(range(len(steps))) - set(order))
    names = [steps[place][0] for place in cycle]
    report.add(
        ("steps", steps[cycle[0]][1], "dependencies"),
        f"steps form a dependency cycle: {' -> '.join(names)} (each runs after the one before it)",
        PluginErrorCode.CircularDependency,
    )


def build_workflow(report: Report) -> Workflow | None:
    """The workflow the data describes, reporting what the builders refuse.

    Steps and fields that already have a problem are left out, so each problem is
    reported once. Returns ``None`` when the top level itself is unusable.
    """
    data = report.data
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    workflow = Workflow(data["id"])
    for key, setter in (
        ("name", workflow.set_name),
        ("description", workflow.set_description),
        ("mode", lambda mode: workflow.set_execution_mode(ExecutionMode(mode))),
        ("timeout", workflow.set_timeout),
    ):
        if key in data and not report.has_problem_under((key,)):
            _apply(report, (key,), setter, data[key])
    for i, step in _steps(data):
        built = _build_step(report, ("steps", i), step)
        if built is not None:
            workflow.add_step(built)
    for step_id, step in _rollbacks(data):
        built = _build_step(report, ("rollback_steps", step_id), step)
        if built is not None:
            workflow.add_rollback_step(step_id, built)
    return workflow


def _rollbacks(data: object) -> list[tuple[str, dict[str, Any]]]:
    rollbacks = data.get("rollback_steps") if isinstance(data, dict) else None
    if not isinstance(rollbacks, dict):
        return []
    return [(key, step) for key, step in rollbacks.items() if isinstance(step, dict)]


def _build_step(report: Report, where: Path, step: dict[str, Any]) -> WorkflowStep | None:
    """The step at `where`, or None if a required field is missing or bad."""
    required = ("id", "plugin", "method")
    if where in report.paths or any(report.has_problem_under((*where, key)) for key in required):
        return None
    fields = step_file_fields()
    built = WorkflowStep(step["id"], step["plugin"], step["method"])
    for key, value in step.items():
        if key in required or report.has_problem_under((*where, key)):
            continue
        attribute = fields.get(key)
        if attribute is not None:
            _apply(report, (*where, key), functools.partial(setattr, built, attribute), value)
    return built


def _apply(report: Report, path: Path, setter: Any, value: object) -> None:
    try:
        setter(value)
    except (TypeError, ValueError) as exc:
        report.add(path, str(exc))


# -- plugins -----------------------------------------------------------------------


def check_plugins(report: Report, manager: PluginManager) -> None:
    """Load the file's ``plugins`` into `manager`, then check every step's plugin and method."""
    data = report.data
    plugins = data.get("plugins", []) if isinstance(data, dict) else []
    for i, entry in enumerate(plugins if isinstance(plugins, list) else []):
        if not report.has_problem_under(("plugins", i)):
            problem = _load_plugin(manager, entry)
            if problem is not None:
                why = f": {problem.details}" if problem.details else ""
                report.add(("plugins", i), f"{problem.message}{why}", problem.code)
    binders = BinderCache()
    for i, step in _steps(data):
        plugin_id, method = step.get("plugin"), step.get("method")
        if not isinstance(plugin_id, str) or not isinstance(method, str) or not plugin_id:
            continue
        try:
            resolve(manager, binders, plugin_id, method)
        except PluginError as error:
            key = "plugin" if error.code is PluginErrorCode.PluginNotFound else "method"
            report.add(("steps", i, key), error.message, error.code)


def _load_plugin(manager: PluginManager, entry: object) -> PluginError | None:
    if isinstance(entry, dict):
        loaded = manager.load_plugin(entry["load"], entry["id"])
    elif isinstance(entry, str) and ":" in entry:
        loaded = manager.load_plugin(entry)
    elif isinstance(entry, str):
        if manager.has_plugin(entry):
            return None
        found = list(entry_points(group=ENTRY_POINT_GROUP, name=entry))
        if not found:
            return PluginError(
                PluginErrorCode.PluginNotFound,
                f"no installed distribution has a {ENTRY_POINT_GROUP!r} entry point named "
                f"{entry!r} (for a module, write 'package.module:attribute')",
            )
        plugin = _load_entry_point(found[0])
        if not plugin:
            return plugin.error()
        loaded = manager.register_plugin(plugin.value(), entry)
    else:  # the schema has reported it
        return None
    return None if loaded else loaded.error()
