"""The ``qtforge`` commands: run, validate, graph and plugins here; history, status,
resume and cancel (against a store) in ``_stored.py``; report in ``_report.py``.

Exit statuses: 0 success; 1 a failed workflow (``run``, ``resume``) or an invalid file
(``validate``); 2 bad input: an invalid workflow file, a bad option (as for any usage
error), an unknown execution, one that cannot be resumed or cancelled in its state, or a
store file that cannot be used (not a qtforge store, a newer schema, locked); 130 a
cancelled workflow (Ctrl-C, or ``qtforge cancel`` from elsewhere).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .. import _graph
from .._errors import PluginError
from .._plugins import PluginManager
from .._version import __version__
from ..orchestration import Workflow, WorkflowFileError
from ._report import report
from ._run import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_USAGE,
    choose_display,
    engine_warnings_quieted,
    fail,
    fail_with_problems,
    finish,
    plugin_manager_for,
    run_workflow,
    stderr_console,
    stdout_console,
    write_output,
)
from ._stored import cancel, history, read_execution, resume, status, store_option

__all__ = ["main"]

_FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qtforge")
def main() -> None:
    """Run, check and draw qtforge workflow files (YAML, TOML or JSON)."""


# -- run -----------------------------------------------------------------------------


def _parse_set(values: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in values:
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise click.BadParameter(f"{item!r} is not of the form key=value", param_hint="--set")
        try:
            data[key] = json.loads(text)
        except json.JSONDecodeError:
            data[key] = text
    return data


def _read_data(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {str(path)!r}: {exc}", param_hint="--data") from None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{str(path)!r} is not valid JSON: {exc.msg} (line {exc.lineno})", param_hint="--data"
        ) from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{str(path)!r} must hold a JSON object", param_hint="--data")
    return data


@main.command()
@_FILE
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Add KEY to the initial data (VALUE is parsed as JSON if it can be, else a string). "
    "Repeatable; wins over --data.",
)
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON object file: the execution's initial data.",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record the execution in this SQLite file (created if missing), for history, "
    "status, resume and cancel.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the results dictionary, as JSON.")
def run(
    file: Path,
    settings: tuple[str, ...],
    data_file: Path | None,
    store: Path | None,
    as_json: bool,
) -> None:
    """Run the workflow in FILE and show its progress.

    A terminal gets live progress bars; a pipe or file gets one line per event. A summary
    table follows, naming the execution when it is recorded in a --store. Exits 0 if the
    workflow completed, 1 if it failed, 130 if it was cancelled (Ctrl-C cancels it
    cleanly), 2 for an invalid file, option or store.
    """
    initial_data = {**_read_data(data_file), **_parse_set(settings)}
    manager = plugin_manager_for(file)
    try:
        workflow = Workflow.from_file(file, plugin_manager=manager)
    except WorkflowFileError as error:
        fail_with_problems(error, EXIT_USAGE)
    console = stdout_console()
    display = choose_display(console, workflow, as_json)
    try:
        with engine_warnings_quieted(not as_json):
            results = run_workflow(workflow, manager, initial_data, display, store)
    except KeyboardInterrupt:  # before the engine started listening for it
        stderr_console().print("Interrupted.", style="yellow")
        sys.exit(EXIT_CANCELLED)
    except PluginError as error:  # it could not start: the store cannot be used
        fail(error.message)
    finish(console, workflow, results, as_json, store)


# -- validate ------------------------------------------------------------------------


@main.command()
@_FILE
def validate(file: Path) -> None:
    """Check FILE: its fields, its step graph, and that its plugins and methods exist.

    Lists every problem, each with its line and field, and exits 1 if there is any.
    """
    try:
        workflow = Workflow.from_file(file, plugin_manager=plugin_manager_for(file))
    except WorkflowFileError as error:
        fail_with_problems(error, EXIT_FAILED)
    count = len(workflow.steps)
    click.echo(
        f"{file}: workflow {workflow.workflow_id!r} is valid "
        f"({count} step{'s' if count != 1 else ''}, {workflow.execution_mode.value})"
    )


# -- graph ---------------------------------------------------------------------------


@main.command()
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_graph.FORMATS),
    help="Output format (default: from the --output suffix, else mermaid).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
@click.option(
    "--execution",
    "execution_id",
    metavar="ID",
    help="Colour the steps by their status in this stored execution (needs --store).",
)
@store_option(required=False)
def graph(
    file: Path | None,
    fmt: str | None,
    output: Path | None,
    execution_id: str | None,
    store: Path | None,
) -> None:
    """Draw the step graph of FILE as Mermaid, Graphviz DOT or SVG.

    Only reads the file: no plugin is loaded. With --execution ID --store FILE.db the
    steps are coloured by their status in that execution, and FILE may be left out to
    draw the workflow recorded with it.
    """
    if (execution_id is None) != (store is None):
        raise click.UsageError("--execution and --store go together")
    if file is None and execution_id is None:
        raise click.UsageError("Missing argument 'FILE' (or give --execution and --store).")
    workflow = None
    if file is not None:
        try:
            workflow = Workflow.from_file(file)
        except WorkflowFileError as error:
            fail_with_problems(error, EXIT_USAGE)
    statuses = None
    if execution_id is not None and store is not None:
        stored, found = read_execution(store, execution_id)
        statuses = found["steps"]
        if workflow is None:
            workflow = stored
        elif workflow.workflow_id != stored.workflow_id:
            fail(
                f"execution {execution_id!r} ran workflow {stored.workflow_id!r}, "
                f"but {str(file)!r} holds workflow {workflow.workflow_id!r}"
            )
    assert workflow is not None
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        fmt = {"svg": "svg", "dot": "dot", "gv": "dot"}.get(suffix, "mermaid")
    write_output(output or Path("-"), _graph.render(workflow, fmt, statuses))


# -- plugins -------------------------------------------------------------------------


class _Source(str):
    """An annotation as written in the source; shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _signature(method: Any) -> str:
    """``(name: type = default) -> type``, with annotations as the source spells them."""
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # some builtins
        return "(...)"
    parameters = [
        p.replace(annotation=_Source(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
    ]
    returns = signature.return_annotation
    return str(
        signature.replace(
            parameters=parameters,
            return_annotation=_Source(returns) if isinstance(returns, str) else returns,
        )
    )


def _methods(plugin: object) -> Iterator[str]:
    """The signature of each public method of `plugin` except the lifecycle hooks."""
    for name in dir(plugin):
        if name.startswith("_") or name in ("initialize", "shutdown"):
            continue
        if not inspect.isroutine(inspect.getattr_static(plugin, name, None)):
            continue
        method = getattr(plugin, name)
        prefix = "async " if inspect.iscoroutinefunction(method) else ""
        yield f"{prefix}{name}{_signature(method)}"


@main.command()
def plugins() -> None:
    """List the installed plugins (entry points of group qtforge.plugins) and their methods."""
    manager = PluginManager(discover=True)
    ids = manager.list_plugins()
    if not ids:
        click.echo("No plugins are installed (none advertises a 'qtforge.plugins' entry point).")
        return
    for plugin_id in sorted(ids):
        plugin = manager.get_plugin(plugin_id).value()
        kind = type(plugin)
        click.echo(f"{plugin_id}  ({kind.__module__}.{kind.__qualname__})")
        for signature in _methods(plugin):
            click.echo(f"    {signature}")


for _command in (history, status, resume, cancel, report):
    main.add_command(_command)
