"""``qtforge run`` and ``qtforge resume``: one execution on the async engine, shown as it
happens; and what every command shares (consoles, plugins, the store, exit statuses).

The engine (`AsyncPluginOrchestrator`) runs inside ``anyio.run``; the display consumes
its event stream. The first Ctrl-C (or SIGTERM) cancels the execution through the
engine, which stops its steps and ends it ``cancelled``; a second one stops at once.
With a store (``--store``) the orchestrator records the execution there, so that
``resume`` can continue it after a crash, from another process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click
from rich.console import Console

from .._errors import Expected, PluginError, PluginErrorCode
from .._plugins import PluginManager
from ..orchestration import AsyncPluginOrchestrator, Workflow, WorkflowFileError
from ..orchestration import events as ev
from ..store import SQLiteStore
from ._display import Display, LineDisplay, LiveDisplay, QuietDisplay, summary_table

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "choose_display",
    "engine_warnings_quieted",
    "exit_status",
    "fail",
    "fail_with_problems",
    "finish",
    "load_stored",
    "open_orchestrator",
    "plugin_manager_for",
    "resume_execution",
    "run_workflow",
    "stderr_console",
    "stdout_console",
    "stored_workflow",
    "to_json",
    "write_output",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # what click exits with for a usage error
EXIT_CANCELLED = 130  # what a shell reports for a program stopped by Ctrl-C

_FINAL = (ev.WorkflowCompleted, ev.WorkflowFailed, ev.WorkflowCancelled)

Start = Callable[[AsyncPluginOrchestrator], Awaitable[Expected[str, PluginError]]]


# -- shared by the commands ------------------------------------------------------------


def stdout_console() -> Console:
    return Console(highlight=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    """Print ``Error: message`` on standard error and exit with `status`."""
    stderr_console().print(f"Error: {message}", markup=False, style="red", soft_wrap=True)
    sys.exit(status)


def write_output(output: Path, text: str) -> None:
    """Write a command's output to `output` (``-``: standard output); exit 2 with one
    line if it cannot be written."""
    if str(output) == "-":
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {str(output)!r}: {exc.strerror or exc}")
    click.echo(f"wrote {output}", err=True)


def fail_with_problems(error: WorkflowFileError, status: int) -> NoReturn:
    """Print every problem of a workflow file, then a count, and exit with `status`."""
    console = stderr_console()
    for problem in error.problems:
        console.print(str(problem), markup=False, soft_wrap=True)
    count = len(error.problems)
    console.print(f"{count} problem{'s' if count > 1 else ''} in {error.file}", markup=False)
    sys.exit(status)


def plugin_manager_for(file: Path | None) -> PluginManager:
    """The installed entry-point plugins; ``module:attr`` references in `file` may also
    name modules next to it."""
    if file is not None:
        folder = str(file.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return PluginManager(discover=True)


def choose_display(console: Console, workflow: Workflow, as_json: bool) -> Display:
    """Nothing for ``--json``, progress bars on a terminal, else one line per event."""
    if as_json:
        return QuietDisplay()
    if console.is_terminal:
        return LiveDisplay(console, workflow)
    return LineDisplay(console)


@contextlib.contextmanager
def engine_warnings_quieted(quiet: bool) -> Iterator[None]:
    """If `quiet`, quiet the engine's warnings (failed steps and workflows: the display
    reports the same events), unless the application set the ``qtforge.engine`` logger's
    level itself."""
    log = logging.getLogger("qtforge.engine")
    if not quiet or log.level != logging.NOTSET:
        yield
        return
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(logging.NOTSET)


@contextlib.asynccontextmanager
async def open_orchestrator(
    plugin_manager: PluginManager, store: Path | None
) -> AsyncIterator[AsyncPluginOrchestrator]:
    """An orchestrator, recording in the SQLite file `store` if given.

    The store is opened first, so that a file that cannot be used (not a qtforge store, a
    newer schema, locked) raises its `StoreError` here rather than failing every call.
    """
    opened = None
    if store is not None:
        opened = SQLiteStore(store)
        await opened.open()
    async with AsyncPluginOrchestrator(plugin_manager, store=opened) as orchestrator:
        yield orchestrator


def stored_workflow(row: Mapping[str, Any]) -> Workflow:
    """The workflow snapshot a store recorded with an execution (plugins not loaded)."""
    return Workflow.from_dict(json.loads(row["snapshot"]))


# -- running -----------------------------------------------------------------------------


def run_workflow(
    workflow: Workflow,
    plugin_manager: PluginManager,
    initial_data: Mapping[str, Any],
    display: Display,
    store: Path | None = None,
) -> dict[str, Any]:
    """Run `workflow` to its end and return its results dictionary.

    Raises `PluginError` (a `StoreError` among them) if the execution cannot start.
    """

    async def main() -> dict[str, Any]:
        async with open_orchestrator(plugin_manager, store) as orchestrator:
            orchestrator.register_workflow(workflow).value()
            return await _follow(
                orchestrator,
                lambda o: o.execute_workflow(
                    workflow.workflow_id, dict(initial_data), async_execution=True
                ),
                display,
            )

    return anyio.run(main)


def resume_execution(
    execution_id: str,
    plugin_manager: PluginManager,
    store: Path,
    make_display: Callable[[Workflow], Display],
) -> tuple[Workflow, dict[str, Any]]:
    """Resume the stored execution `execution_id` to its end, shown by the display that
    `make_display` makes for its stored workflow; returns that workflow and the results.

    Raises `PluginError` if it cannot be resumed (unknown, finished, unusable store).
    """

    async def main() -> tuple[Workflow, dict[str, Any]]:
        async with open_orchestrator(plugin_manager, store) as orchestrator:
            row = await load_stored(orchestrator, execution_id)
            workflow = stored_workflow(row)
            results = await _follow(
                orchestrator,
                lambda o: o.resume_workflow(execution_id, async_execution=True),
                make_display(workflow),
            )
            return workflow, results

    return anyio.run(main)


async def load_stored(orchestrator: AsyncPluginOrchestrator, execution_id: str) -> dict[str, Any]:
    """The stored row of `execution_id`; `PluginError` ``NotFound`` if there is none."""
    store = orchestrator.store
    assert store is not None
    row = await store.load(execution_id)
    if row is None:
        where = getattr(store, "path", "the store")
        raise PluginError(
            PluginErrorCode.NotFound, f"no execution with id {execution_id!r} in {where}"
        )
    return row


async def _follow(
    orchestrator: AsyncPluginOrchestrator, start: Start, display: Display
) -> dict[str, Any]:
    """Start an execution with `start`, show its events until it ends, return its results."""
    stream = orchestrator.events()  # before starting, so that no event is missed
    started = await start(orchestrator)
    if not started:
        await stream.aclose()
        raise started.error()
    execution_id = started.value()
    with display:
        async with anyio.create_task_group() as group:
            if threading.current_thread() is threading.main_thread():
                group.start_soon(_cancel_on_signal, orchestrator, execution_id, display)
            async for event in stream:
                display.show(event)
                if isinstance(event, _FINAL) and event.execution_id == execution_id:
                    break
            group.cancel_scope.cancel()
    await stream.aclose()
    return (await orchestrator.wait_workflow(execution_id)).value()


async def _cancel_on_signal(
    orchestrator: AsyncPluginOrchestrator, execution_id: str, display: Display
) -> None:
    """The first interrupt cancels the execution; a second one ends the process at once.

    Cancelling is prompt (sync steps are abandoned, not waited for), but a step may shield
    itself from cancellation, and whoever presses Ctrl-C twice wants out now.
    """
    interrupts = 0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            interrupts += 1
            if interrupts == 1:
                display.note(
                    "Interrupted: cancelling the workflow (interrupt again to stop at once)"
                )
                await orchestrator.cancel_workflow(execution_id)
                continue
            display.__exit__(None, None, None)  # give the terminal its cursor back
            print("Stopped at once, without waiting for the workflow.", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_CANCELLED)


def finish(
    console: Console,
    workflow: Workflow,
    results: Mapping[str, Any],
    as_json: bool,
    store: Path | None,
) -> NoReturn:
    """Print the results (as JSON, or the summary table) and exit with their status."""
    if as_json:
        click.echo(to_json(results))
    else:
        console.print(summary_table(workflow, results))
        if results.get("error"):
            console.print(f"Error: {results['error']}", markup=False, style="red")
        if store is not None:
            recorded = f"Execution {results['execution_id']} recorded in {store}."
            console.print(recorded, markup=False, soft_wrap=True)
    sys.exit(exit_status(results))


def exit_status(results: Mapping[str, Any]) -> int:
    """0 for a completed execution, 1 for a failed one, 130 for a cancelled one."""
    status = results.get("status")
    if status == "completed":
        return EXIT_OK
    return EXIT_CANCELLED if status == "cancelled" else EXIT_FAILED


def _jsonable(value: object) -> object:
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(results: Any) -> str:
    """`results` as JSON; values JSON cannot hold become lists or strings."""
    return json.dumps(results, indent=2, default=_jsonable, ensure_ascii=False)
