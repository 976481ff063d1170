"""Workflow files: YAML, TOML or JSON in, YAML or JSON out.

A file holds the fields of `Workflow` and `WorkflowStep` (steps spell ``step_id``,
``plugin_id`` and ``method_name`` as ``id``, ``plugin`` and ``method``), and may name
``plugins`` to load. Loading never runs code from the file: YAML goes through PyYAML's
safe loader, which builds only plain data, and conditions stay strings for the
engine's safe evaluator. What goes wrong is reported all at once (`WorkflowFileError`),
each problem with its file, line (YAML and JSON) and field; see ``_filecheck.py``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

import yaml

from .._errors import PluginErrorCode
from .._plugins import PluginManager
from ._filecheck import (
    FILE_NAMES,
    build_workflow,
    check_graph,
    check_plugins,
    check_schema,
    step_file_fields,
)
from ._fileproblems import FileProblem, Locator, Path, Report, WorkflowFileError
from ._workflow import Workflow, WorkflowStep

__all__ = ["load_workflow", "save_workflow", "workflow_from_data", "workflow_to_dict"]

_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}
_MAX_LOCATED = 100_000  # values whose lines are recorded; YAML aliases can nest deeply


def load_workflow(
    path: str | os.PathLike[str], plugin_manager: PluginManager | None = None
) -> Workflow:
    """Read the workflow file at `path` (see `Workflow.from_file`)."""
    file = os.fspath(path)
    kind = _FORMATS.get(FilePath(file).suffix.lower())
    if kind is None:
        known = ", ".join(_FORMATS)
        raise _error(
            file, f"unknown file type: expected one of {known}", PluginErrorCode.InvalidFormat
        )
    try:
        text = FilePath(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _error(file, "no such file", PluginErrorCode.FileNotFound) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(
            file, f"cannot read the file: {exc}", PluginErrorCode.FileSystemError
        ) from None
    data, locator = _parse(file, kind, text)
    return workflow_from_data(data, plugin_manager, file=file, locator=locator)


def workflow_from_data(
    data: object,
    plugin_manager: PluginManager | None = None,
    *,
    file: str = "<dict>",
    locator: Locator | None = None,
) -> Workflow:
    """Check `data` and build its workflow (see `Workflow.from_dict`)."""
    report = Report(file, copy.deepcopy(data), locator or Locator())
    check_schema(report)
    check_graph(report)
    workflow = build_workflow(report)
    if plugin_manager is not None:
        check_plugins(report, plugin_manager)
    if report.problems or workflow is None:
        raise WorkflowFileError(file, report.sorted_problems())
    return workflow


def _error(
    file: str, message: str, code: PluginErrorCode, line: int | None = None
) -> WorkflowFileError:
    return WorkflowFileError(file, [FileProblem(file, line, "", message, code)])


# -- parsing -----------------------------------------------------------------------


def _parse(file: str, kind: str, text: str) -> tuple[object, Locator]:
    if kind == "toml":
        try:
            return tomllib.loads(text), Locator()
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"\(at line (\d+)", str(exc))
            line = int(found.group(1)) if found else None
            if "(at end of document)" in str(exc):
                line = text.count("\n") + 1
            raise _error(
                file, f"not valid TOML: {exc}", PluginErrorCode.InvalidFormat, line
            ) from None
    if kind == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(
                file, f"not valid JSON: {exc.msg}", PluginErrorCode.InvalidFormat, exc.lineno
            ) from None
        try:  # JSON is YAML: YAML's composer knows where every value is
            return data, _locate(yaml.SafeLoader(text).get_single_node())
        except yaml.YAMLError:
            return data, Locator()
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return loader.construct_document(node) if node is not None else None, _locate(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise _error(
            file, f"not valid YAML: {problem}", PluginErrorCode.InvalidFormat, line
        ) from None
    except yaml.YAMLError as exc:
        raise _error(file, f"not valid YAML: {exc}", PluginErrorCode.InvalidFormat) from None
    finally:
        loader.dispose()


def _locate(root: yaml.Node | None) -> Locator:
    """The line of every value below `root` (keys: the line of the key)."""
    lines: dict[Path, int] = {}
    if root is None:
        return Locator()
    lines[()] = root.start_mark.line + 1
    pending: list[tuple[yaml.Node, Path]] = [(root, ())]
    while pending and len(lines) < _MAX_LOCATED:
        node, path = pending.pop()
        children: list[tuple[str | int, yaml.Node, int]] = []
        if isinstance(node, yaml.MappingNode):
            children = [
                (key.value, value, key.start_mark.line + 1)
                for key, value in node.value
                if isinstance(key, yaml.ScalarNode)
            ]
        elif isinstance(node, yaml.SequenceNode):
            children = [(i, item, item.start_mark.line + 1) for i, item in enumerate(node.value)]
        for key, child, line in children:
            lines.setdefault((*path, key), line)
            if key != "parameters":  # nothing inside parameters is checked
                pending.append((child, (*path, key)))
    return Locator(lines)


# -- writing -----------------------------------------------------------------------


def workflow_to_dict(workflow: Workflow) -> dict[str, Any]:
    """The file form of `workflow` (see `Workflow.to_dict`)."""
    data: dict[str, Any] = {"id": workflow.workflow_id}
    if workflow.name:
        data["name"] = workflow.name
    if workflow.description:
        data["description"] = workflow.description
    data["mode"] = workflow.execution_mode.value
    if workflow.timeout is not None:
        data["timeout"] = workflow.timeout
    data["steps"] = [_step_to_dict(step) for step in workflow.steps]
    rollbacks = workflow.rollback_steps
    if rollbacks:
        data["rollback_steps"] = {
            step_id: _step_to_dict(step) for step_id, step in rollbacks.items()
        }
    return data


def _step_to_dict(step: WorkflowStep) -> dict[str, Any]:
    where = f"step {step.step_id!r}"
    if step.retry_on is not None:
        raise ValueError(f"{where}: retry_on is code, which a workflow file cannot hold")
    out: dict[str, Any] = {}
    default = WorkflowStep(step.step_id, step.plugin_id, step.method_name)
    for key, attribute in step_file_fields().items():
        value = getattr(step, attribute)
        if attribute in FILE_NAMES or value != getattr(default, attribute):
            _check_plain(value, f"{where}: {key}")
            out[key] = copy.deepcopy(value)
    return out


def _check_plain(value: object, where: str) -> None:
    """Refuse what YAML and JSON cannot both hold as plain data (so loading gives it back)."""
    pending: list[tuple[object, str]] = [(value, where)]
    while pending:
        item, at = pending.pop()
        if item is None or isinstance(item, bool | int | float | str):
            continue
        if isinstance(item, list):
            pending.extend((element, f"{at}[{i}]") for i, element in enumerate(item))
        elif isinstance(item, dict) and all(isinstance(key, str) for key in item):
            pending.extend((element, f"{at}.{key}") for key, element in item.items())
        else:
            kind = (
                "a mapping with keys that are not strings"
                if isinstance(item, Mapping)
                else (f"a {type(item).__name__}")
            )
            raise ValueError(
                f"{at} is {kind}, which a workflow file cannot hold (use null, booleans, "
                "numbers, strings, lists and mappings with string keys)"
            )


def save_workflow(workflow: Workflow, path: str | os.PathLike[str]) -> None:
    """Write `workflow` to `path` (see `Workflow.to_file`)."""
    file = os.fspath(path)
    kind = _FORMATS.get(FilePath(file).suffix.lower())
    if kind not in ("yaml", "json"):
        raise ValueError(
            f"cannot write {file!r}: qtforge writes workflow files as .yaml, .yml or .json "
            "(it reads .toml too, but TOML has no null to write)"
        )
    data = workflow_to_dict(workflow)
    if kind == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    FilePath(file).write_text(text, encoding="utf-8")
