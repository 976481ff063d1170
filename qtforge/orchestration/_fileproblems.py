"""Problems in a workflow file: what `Workflow.from_file` raises, and how they are collected.

A `Report` gathers the `FileProblem` of one file as the checks in ``_filecheck.py`` find
them, each at a `Path` into the parsed data; a `Locator` turns that path into a line of
the file, and `Report.field` into the name the user reads (``steps.transform.timeout``).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._errors import PluginError, PluginErrorCode

__all__ = ["FileProblem", "Locator", "Path", "Report", "WorkflowFileError", "suggest"]

Path = tuple[str | int, ...]
"""Where a value sits in the data: keys and list indices from the top."""


@attrs.frozen
class FileProblem:
    """One problem in a workflow file.

    Attributes:
        file: The file, as it was named (``"<dict>"`` for `Workflow.from_dict`).
        line: The 1-based line the problem is on, when it is known (YAML and JSON).
        field: The field, e.g. ``"steps.transform.timeout"`` (``""`` for the whole file).
        message: What is wrong, and what was expected.
        code: The kind of problem, as the engine would report it.
    """

    file: str
    line: int | None
    field: str
    message: str
    code: PluginErrorCode = PluginErrorCode.InvalidConfiguration

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class WorkflowFileError(PluginError):
    """A workflow file or mapping that cannot be loaded; `problems` lists all of them.

    Its `code` is the first problem's code and its message lists every problem, one a line.
    """

    file: str
    problems: tuple[FileProblem, ...]

    def __init__(self, file: str, problems: Sequence[FileProblem]) -> None:
        if not problems:
            raise ValueError("a WorkflowFileError needs at least one problem")
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(problems[0].code, f"workflow file {file} has {count}:\n{lines}")
        self.file = file
        self.problems = tuple(problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.file, self.problems)


class Locator:
    """Lines of the values of a parsed file, by path (empty for formats without marks)."""

    def __init__(self, lines: Mapping[Path, int] | None = None) -> None:
        self.lines: dict[Path, int] = dict(lines or {})

    def line(self, path: Path) -> int | None:
        """The line of `path`, else of the nearest enclosing value that has one."""
        while True:
            line = self.lines.get(path)
            if line is not None or not path:
                return line
            path = path[:-1]


class Report:
    """Collects the problems of one file."""

    def __init__(self, file: str, data: object, locator: Locator) -> None:
        self.file = file
        self.data = data
        self.locator = locator
        self.problems: list[FileProblem] = []
        self.paths: set[Path] = set()

    def add(
        self, path: Path, message: str, code: PluginErrorCode = PluginErrorCode.InvalidConfiguration
    ) -> None:
        problem = FileProblem(self.file, self.locator.line(path), self.field(path), message, code)
        if problem not in self.problems:  # jsonschema reports each missing field twice
            self.paths.add(path)
            self.problems.append(problem)

    def has_problem_under(self, path: Path) -> bool:
        return any(found[: len(path)] == path for found in self.paths)

    def field(self, path: Path) -> str:
        """``steps.<id>.timeout`` for a step with an id, ``steps[2].timeout`` otherwise."""
        parts: list[str] = []
        for place, key in enumerate(path):
            if isinstance(key, int):
                step_id = _step_id(self.data, key) if path[:place] == ("steps",) else None
                parts.append(f".{step_id}" if step_id else f"[{key}]")
            else:
                parts.append(f".{key}" if parts else key)
        return "".join(parts)

    def sorted_problems(self) -> list[FileProblem]:
        return sorted(self.problems, key=lambda p: (p.line is None, p.line or 0, p.field))


def _step_id(data: object, index: int) -> str | None:
    steps = data.get("steps") if isinstance(data, dict) else None
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        step_id = steps[index].get("id")
        if isinstance(step_id, str) and step_id:
            return step_id
    return None


def suggest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
