"""What ``qtforge run`` shows while a workflow runs, and the summary after it.

On a terminal, `LiveDisplay` draws rich progress bars: one for the workflow (with its
ETA) and one for each running step, and prints a line as each step finishes or is
retried. Anywhere else (a pipe, a file, CI logs) `LineDisplay` prints one plain
``key=value`` line per event, as it happens. `summary_table` is printed by both;
`styled` and `duration_text` format statuses and durations for the store commands too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

import attrs
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from .. import _timeline
from ..orchestration import Workflow
from ..orchestration import events as ev

__all__ = [
    "Display",
    "LineDisplay",
    "LiveDisplay",
    "QuietDisplay",
    "duration_text",
    "styled",
    "summary_table",
]

_STATUS_STYLES = {
    "completed": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "skipped": "dim",
    "pending": "dim",
    "running": "blue",
    "retrying": "yellow",
    "paused": "magenta",
}


def styled(status: str) -> str:
    """`status` as rich markup, coloured by what it means."""
    return f"[{_STATUS_STYLES.get(status, 'none')}]{escape(status)}[/]"


class Display(Protocol):
    """Shows the events of one execution; used as a context manager around the run."""

    def __enter__(self) -> Display: ...
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    def show(self, event: ev.Event) -> None: ...
    def note(self, text: str) -> None: ...


class QuietDisplay:
    """Shows nothing (``--json``: standard output holds only the results)."""

    def __enter__(self) -> QuietDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def show(self, event: ev.Event) -> None:
        return None

    def note(self, text: str) -> None:
        return None


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"'=" for c in text) else text


class LineDisplay:
    """One line per event: ``+SECONDS KIND SUBJECT key=value ...``, flushed at once."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._start: float | None = None

    def __enter__(self) -> LineDisplay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def show(self, event: ev.Event) -> None:
        if self._start is None:
            self._start = event.timestamp
        fields = attrs.asdict(event, recurse=False)
        subject = event.step_id or event.workflow_id
        for key in ("execution_id", "workflow_id", "step_id", "timestamp"):
            fields.pop(key)
        if isinstance(event, ev.WorkflowStarted):
            fields = {"execution": event.execution_id, **fields}
        details = " ".join(f"{key}={_value(value)}" for key, value in fields.items())
        elapsed = event.timestamp - self._start
        self._print(f"+{elapsed:.3f}s {event.kind} {subject} {details}".rstrip())

    def note(self, text: str) -> None:
        self._print(text)

    def _print(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        self._console.file.flush()


class LiveDisplay:
    """Progress bars on a terminal: the workflow's, and one per running step."""

    def __init__(self, console: Console, workflow: Workflow) -> None:
        self._console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._overall = self._progress.add_task(
            f"[bold]{escape(workflow.workflow_id)}", total=100.0
        )
        self._steps: dict[str, TaskID] = {}

    def __enter__(self) -> LiveDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def note(self, text: str) -> None:
        self._progress.console.print(escape(text), style="yellow")

    def show(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepFinished | ev.Progress):
            self._progress.update(self._overall, completed=event.progress)
        step = escape(event.step_id or "")
        if isinstance(event, ev.WorkflowStarted):
            self._print(f"[dim]execution {escape(event.execution_id)}")
        elif isinstance(event, ev.StepStarted):
            label = f"  {step}" + (f" [dim](attempt {event.attempt})" if event.attempt > 1 else "")
            task = self._steps.get(event.step_id or "")
            if task is None:
                self._steps[event.step_id or ""] = self._progress.add_task(label, total=None)
            else:
                self._progress.update(task, description=label)
        elif isinstance(event, ev.Progress) and event.step_id in self._steps:
            if event.step_progress is not None:
                self._progress.update(
                    self._steps[event.step_id], total=1.0, completed=event.step_progress
                )
        elif isinstance(event, ev.StepRetrying):
            task = self._steps.get(event.step_id or "")
            if task is not None:
                waiting = f"  {step} [yellow]retry in {event.delay:.1f} s"
                self._progress.update(task, description=waiting)
            self._print(
                f"[yellow]↻ {step}[/] attempt {event.attempt} failed "
                f"({escape(event.error_code)}: {escape(event.error)}); retrying in "
                f"{event.delay:.1f} s"
            )
        elif isinstance(event, ev.StepFinished):
            self._finish_step(event, step)
        elif isinstance(event, ev.EventsDropped):
            self._print(f"[dim]({event.count} events not shown: the display fell behind)")

    def _finish_step(self, event: ev.StepFinished, step: str) -> None:
        task = self._steps.pop(event.step_id or "", None)
        if task is not None:
            self._progress.remove_task(task)
        if isinstance(event, ev.StepCompleted):
            self._print(f"[green]✓ {step}[/] [dim]{event.duration_ms:.0f} ms")
        elif isinstance(event, ev.StepFailed):
            self._print(f"[bold red]✗ {step}[/] {escape(event.error)}")
        elif isinstance(event, ev.StepSkipped):
            self._print(f"[dim]- {step} skipped: {escape(event.reason)}")
        elif isinstance(event, ev.StepCancelled):
            self._print(f"[yellow]⊘ {step} cancelled")

    def _print(self, text: str) -> None:
        self._progress.console.print(text, highlight=False)


def duration_text(milliseconds: object) -> str:
    """A duration in ms written as the report writes it (``850 ms``, ``12.5 s``,
    ``3 min 20 s``); empty if `milliseconds` is not a number."""
    if not isinstance(milliseconds, int | float):
        return ""
    return _timeline.duration_text(milliseconds / 1000)


def summary_table(workflow: Workflow, results: Mapping[str, Any]) -> Table:
    """One row per step: status, attempts, duration, and the error if any step has one."""
    status = str(results.get("status"))
    title = f"{workflow.workflow_id}: {status} in {duration_text(results.get('duration_ms'))}"
    table = Table(
        title=title,
        title_justify="left",
        title_style=_STATUS_STYLES.get(status),
        box=box.SIMPLE,
    )
    for column in ("Step", "Call", "Status", "Attempts", "Duration"):
        table.add_column(column, no_wrap=True)
    steps: Mapping[str, Mapping[str, Any]] = results.get("steps") or {}
    errors = any(outcome.get("error") for outcome in steps.values())
    if errors:
        table.add_column("Error", overflow="fold", min_width=20, ratio=1)
    for step in workflow.steps:
        outcome = steps.get(step.step_id, {})
        state = str(outcome.get("status", ""))
        cells = [
            escape(step.step_id),
            escape(f"{step.plugin_id}.{step.method_name}"),
            styled(state),
            str(outcome.get("attempts", "")),
            duration_text(outcome.get("duration_ms")),
        ]
        table.add_row(*cells, *([escape(str(outcome.get("error") or ""))] if errors else []))
    return table
