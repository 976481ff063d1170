"""The commands on a store (``--store runs.db``): history, status, resume and cancel.

Each opens the SQLite file that ``qtforge run --store`` (or ``PluginOrchestrator(store=...)``)
records executions in, through an `AsyncPluginOrchestrator`, so that they read what any
process wrote. A file that cannot be used (not a qtforge store, a newer schema, locked)
is reported with the store's own message, and exit status 2, as an unknown execution is.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._errors import PluginError, PluginErrorCode
from .._plugins import PluginManager
from ..orchestration import AsyncPluginOrchestrator, Workflow, WorkflowFileError
from ..orchestration._records import iso_time
from ._display import Display, duration_text, styled
from ._run import (
    EXIT_CANCELLED,
    EXIT_USAGE,
    choose_display,
    engine_warnings_quieted,
    fail,
    fail_with_problems,
    finish,
    load_stored,
    open_orchestrator,
    plugin_manager_for,
    resume_execution,
    stderr_console,
    stdout_console,
    stored_workflow,
    to_json,
)

__all__ = [
    "EXECUTION_ID",
    "STATUSES",
    "cancel",
    "history",
    "read_execution",
    "resume",
    "status",
    "store_option",
    "with_store",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

STATUSES = ("pending", "running", "paused", "completed", "failed", "cancelled")


def store_option(required: bool = True) -> Callable[[F], F]:
    """``--store FILE``: an existing store (these commands never create one)."""
    return click.option(
        "--store",
        required=required,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The SQLite file the executions are recorded in (qtforge run --store).",
    )


EXECUTION_ID = click.argument("execution_id", metavar="ID")


def with_store(
    store: Path,
    work: Callable[[AsyncPluginOrchestrator], Awaitable[T]],
    plugins: PluginManager | None = None,
) -> T:
    """``work(orchestrator)`` on an orchestrator opened on `store`; a `PluginError` (an
    unknown execution, an unusable store, ...) ends the command with its message. An
    empty file is refused: opening it would make it a store."""
    if store.stat().st_size == 0:
        fail(f"{str(store)!r} is empty, not a qtforge store")

    async def main() -> T:
        async with open_orchestrator(plugins or PluginManager(), store) as orchestrator:
            return await work(orchestrator)

    try:
        return anyio.run(main)
    except PluginError as error:
        fail(error.message)


def _local(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _span_ms(started: float | None, finished: float | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started) * 1000, 3)


def _table_console() -> Console:
    """Standard output; a pipe or file gets tables at their own width (up to 200
    columns), not cut to rich's default of 80."""
    console = stdout_console()
    if not console.is_terminal:
        console.width = max(console.width, 200)
    return console


# -- history -------------------------------------------------------------------------


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An ISO 8601 date or time (local time unless it names its zone) as epoch seconds."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2024-05-01 or "
            "2024-05-01T13:30, local time unless it ends with Z or an offset)"
        ) from None


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    created, finished = row["created_at"], row.get("finished_at")
    return {
        "execution_id": row["execution_id"],
        "workflow_id": row["workflow_id"],
        "status": row["status"],
        "started_at": iso_time(created),
        "finished_at": iso_time(finished),
        "duration_ms": _span_ms(created, finished),
        "resumes": row.get("resumes", 0),
        "error": row.get("error"),
        "error_code": row.get("error_code"),
    }


@click.command()
@store_option()
@click.option("--workflow", "workflow_id", metavar="ID", help="Only this workflow's executions.")
@click.option("--status", "state", type=click.Choice(STATUSES), help="Only those in this status.")
@click.option(
    "--since", metavar="TIME", callback=_time, help="Only those started at TIME or later."
)
@click.option("--until", metavar="TIME", callback=_time, help="Only those started before TIME.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the N most recent.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def history(
    store: Path,
    workflow_id: str | None,
    state: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List the executions recorded in a store, the newest last.

    TIME is an ISO 8601 date or time (2024-05-01, 2024-05-01T13:30, ...), in local time
    unless it names its zone. Exits 2 if the store cannot be read.
    """

    async def find(orchestrator: AsyncPluginOrchestrator) -> list[dict[str, Any]]:
        found = await orchestrator.find_executions(
            workflow_id=workflow_id, status=state, since=since, until=until
        )
        return [_summary(row) for row in found.value()]

    rows = with_store(store, find)
    if limit is not None:
        rows = rows[-limit:]
    if as_json:
        click.echo(to_json(rows))
        return
    console = _table_console()
    if not rows:
        console.print(f"No execution recorded in {store} matches.", markup=False)
        return
    count = f"{len(rows)} execution{'s' if len(rows) > 1 else ''}"
    table = Table(box=box.SIMPLE, title=f"{escape(str(store))}: {count}", title_justify="left")
    table.add_column("Execution", overflow="fold")  # folded rather than cut on a terminal
    for column in ("Workflow", "Status", "Started", "Duration", "Resumes"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        started = datetime.fromisoformat(row["started_at"]).timestamp()
        table.add_row(
            escape(row["execution_id"]),
            escape(row["workflow_id"]),
            styled(row["status"]),
            _local(started),
            duration_text(row["duration_ms"]),
            str(row["resumes"]),
        )
    console.print(table)


# -- status --------------------------------------------------------------------------


async def _read(
    orchestrator: AsyncPluginOrchestrator, execution_id: str
) -> tuple[Workflow, dict[str, Any]]:
    row = await load_stored(orchestrator, execution_id)
    found = (await orchestrator.get_workflow_status(execution_id)).value()
    workflow = stored_workflow(row)
    details = {}
    for step in workflow.steps:
        stored = row["steps"][step.step_id]
        begun, ended = stored["started_at"], stored["finished_at"]
        details[step.step_id] = {
            "status": stored["status"],
            "attempts": stored["attempts"],
            "error": stored["error"],
            "error_code": stored["error_code"],
            "reason": stored["reason"],
            "started_at": iso_time(begun),
            "finished_at": iso_time(ended),
            "duration_ms": _span_ms(begun, ended),
        }
    return workflow, {**found, "step_details": details}


def read_execution(store: Path, execution_id: str) -> tuple[Workflow, dict[str, Any]]:
    """The workflow recorded with a stored execution, and its `get_workflow_status`
    dictionary plus ``step_details`` (per step: status, attempts, error, times); ends the
    command (exit 2) if the execution or the store cannot be read."""
    return with_store(store, lambda orchestrator: _read(orchestrator, execution_id))


@click.command()
@EXECUTION_ID
@store_option()
@click.option("--json", "as_json", is_flag=True, help="Print the status dictionary as JSON.")
def status(execution_id: str, store: Path, as_json: bool) -> None:
    """Show the status of the stored execution ID: overall, and per step.

    Exits 0 whatever the execution's status, 2 if it is unknown or the store cannot be
    read.
    """
    workflow, found = read_execution(store, execution_id)
    if as_json:
        click.echo(to_json(found))
        return
    console = _table_console()
    state = found["status"]
    console.print(
        f"[bold]{escape(execution_id)}[/]  workflow {escape(found['workflow_id'])}: "
        f"{styled(state)}, {found['progress']:.0f}% "
        f"({_finished(found)} of {found['total_steps']} steps finished)",
        soft_wrap=True,
    )
    times = f"started {_local_iso(found['started_at'])}"
    if found["finished_at"]:
        times += f", finished {_local_iso(found['finished_at'])}"
    console.print(times, markup=False, soft_wrap=True)
    if found["error"]:
        console.print(f"Error: {found['error']}", markup=False, style="red", soft_wrap=True)
    table = Table(box=box.SIMPLE)
    for column in ("Step", "Call", "Status", "Attempts", "Duration"):
        table.add_column(column, no_wrap=True)
    details = found["step_details"]
    notes = any(d["error"] or d["reason"] for d in details.values())
    if notes:
        table.add_column("Error", overflow="fold", min_width=20, ratio=1)
    for step in workflow.steps:
        detail = details[step.step_id]
        note = detail["error"] or detail["reason"] or ""
        table.add_row(
            escape(step.step_id),
            escape(f"{step.plugin_id}.{step.method_name}"),
            styled(detail["status"]),
            str(detail["attempts"]),
            duration_text(detail["duration_ms"]),
            *([escape(note)] if notes else []),
        )
    console.print(table)


def _finished(found: Mapping[str, Any]) -> int:
    ends = ("completed", "failed", "skipped", "cancelled")
    return sum(state in ends for state in found["steps"].values())


def _local_iso(text: str) -> str:
    return _local(datetime.fromisoformat(text).timestamp())


# -- resume and cancel ---------------------------------------------------------------

_PLUGINS_FILE = click.option(
    "--file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The workflow file the execution was run from: the plugins it names are loaded "
    "(the steps themselves come from the store).",
)


def _plugins(file: Path | None) -> tuple[PluginManager, str | None]:
    """The installed plugins plus those `file` names, and the id of its workflow; ends
    the command (exit 2) if the file has problems."""
    manager = plugin_manager_for(file)
    if file is None:
        return manager, None
    try:
        return manager, Workflow.from_file(file, plugin_manager=manager).workflow_id
    except WorkflowFileError as error:
        fail_with_problems(error, EXIT_USAGE)


@click.command()
@EXECUTION_ID
@store_option()
@_PLUGINS_FILE
@click.option("--json", "as_json", is_flag=True, help="Print only the results dictionary, as JSON.")
def resume(execution_id: str, store: Path, file: Path | None, as_json: bool) -> None:
    """Continue the stored execution ID, interrupted when its process died.

    Steps that completed are not run again; steps that were running run again. The
    plugins are the installed entry-point ones, plus those the --file names. Shows its
    progress as run does and exits as run does: 0 completed, 1 failed, 130 cancelled, 2 if
    it cannot be resumed (unknown, finished, or the store or file cannot be used).
    """
    manager, expected = _plugins(file)
    console = stdout_console()

    def make_display(workflow: Workflow) -> Display:
        if expected is not None and workflow.workflow_id != expected:
            raise PluginError(
                PluginErrorCode.InvalidArgument,
                f"execution {execution_id!r} ran workflow {workflow.workflow_id!r}, "
                f"but {str(file)!r} holds workflow {expected!r}",
            )
        return choose_display(console, workflow, as_json)

    try:
        with engine_warnings_quieted(not as_json):
            workflow, results = resume_execution(execution_id, manager, store, make_display)
    except KeyboardInterrupt:  # before the engine started listening for it
        stderr_console().print("Interrupted.", style="yellow")
        sys.exit(EXIT_CANCELLED)
    except PluginError as error:
        fail(error.message)
    finish(console, workflow, results, as_json, store)


@click.command()
@EXECUTION_ID
@store_option()
@_PLUGINS_FILE
def cancel(execution_id: str, store: Path, file: Path | None) -> None:
    """Cancel the stored execution ID.

    One running in another process is stopped by that process within about a second
    (its steps end cancelled, its compensations run there). One whose process died is
    ended cancelled here, its compensations run here: their plugins are the installed
    ones plus those the --file names. Exits 2 if it is unknown, has finished, or the store
    cannot be used.
    """
    manager, _ = _plugins(file)

    async def request(orchestrator: AsyncPluginOrchestrator) -> str:
        await load_stored(orchestrator, execution_id)
        (await orchestrator.cancel_workflow(execution_id)).value()
        if execution_id in orchestrator.list_executions():  # interrupted: ended here
            return str((await orchestrator.wait_workflow(execution_id)).value()["status"])
        return str((await orchestrator.get_workflow_status(execution_id)).value()["status"])

    with engine_warnings_quieted(True):
        state = with_store(store, request, manager)
    if state == "cancelled":
        click.echo(f"Execution {execution_id} cancelled.")
    else:
        click.echo(
            f"Cancellation of execution {execution_id} requested: the process running it "
            "stops it ('qtforge status' shows when it has)."
        )
