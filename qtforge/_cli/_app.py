"""The ``qtforge`` commands: run, validate, graph and plugins.

Exit statuses: 0 success; 1 a failed workflow or an invalid file (``validate``);
2 bad input to ``run`` or ``graph`` (an invalid workflow file, a bad option, as for any
usage error); 130 a cancelled workflow (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from .. import _graph
from .._plugins import PluginManager
from .._version import __version__
from ..orchestration import Workflow, WorkflowFileError
from ._display import Display, LineDisplay, LiveDisplay, QuietDisplay, summary_table
from ._run import EXIT_CANCELLED, EXIT_FAILED, exit_status, run_workflow, to_json

__all__ = ["main"]

EXIT_USAGE = 2

_FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


def _stdout() -> Console:
    return Console(highlight=False)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _plugin_manager(file: Path) -> PluginManager:
    """The installed entry-point plugins; ``module:attr`` references in the file may also
    name modules next to it."""
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return PluginManager(discover=True)


def _fail_with_problems(error: WorkflowFileError, status: int) -> NoReturn:
    console = _stderr()
    for problem in error.problems:
        console.print(str(problem), markup=False, soft_wrap=True)
    count = len(error.problems)
    console.print(f"{count} problem{'s' if count > 1 else ''} in {error.file}", markup=False)
    sys.exit(status)


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


@contextlib.contextmanager
def _engine_warnings_shown_by(display: Display) -> Iterator[None]:
    """Quiet the engine's warnings (failed steps and workflows) while `display` reports the
    same events, unless the application set the ``qtforge.engine`` logger's level itself."""
    log = logging.getLogger("qtforge.engine")
    if isinstance(display, QuietDisplay) or log.level != logging.NOTSET:
        yield
        return
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(logging.NOTSET)


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
@click.option("--json", "as_json", is_flag=True, help="Print only the results dictionary, as JSON.")
def run(file: Path, settings: tuple[str, ...], data_file: Path | None, as_json: bool) -> None:
    """Run the workflow in FILE and show its progress.

    A terminal gets live progress bars; a pipe or file gets one line per event. A summary
    table follows. Exits 0 if the workflow completed, 1 if it failed, 130 if it was
    cancelled (Ctrl-C cancels it cleanly), 2 for an invalid file or option.
    """
    initial_data = {**_read_data(data_file), **_parse_set(settings)}
    manager = _plugin_manager(file)
    try:
        workflow = Workflow.from_file(file, plugin_manager=manager)
    except WorkflowFileError as error:
        _fail_with_problems(error, EXIT_USAGE)
    console = _stdout()
    display: Display
    if as_json:
        display = QuietDisplay()
    elif console.is_terminal:
        display = LiveDisplay(console, workflow)
    else:
        display = LineDisplay(console)
    try:
        with _engine_warnings_shown_by(display):
            results = run_workflow(workflow, manager, initial_data, display)
    except KeyboardInterrupt:  # before the engine started listening for it
        _stderr().print("Interrupted.", style="yellow")
        sys.exit(EXIT_CANCELLED)
    if as_json:
        click.echo(to_json(results))
    else:
        console.print(summary_table(workflow, results))
        if results.get("error"):
            console.print(f"Error: {results['error']}", markup=False, style="red")
    sys.exit(exit_status(results))


# -- validate ------------------------------------------------------------------------


@main.command()
@_FILE
def validate(file: Path) -> None:
    """Check FILE: its fields, its step graph, and that its plugins and methods exist.

    Lists every problem, each with its line and field, and exits 1 if there is any.
    """
    try:
        workflow = Workflow.from_file(file, plugin_manager=_plugin_manager(file))
    except WorkflowFileError as error:
        _fail_with_problems(error, EXIT_FAILED)
    count = len(workflow.steps)
    click.echo(
        f"{file}: workflow {workflow.workflow_id!r} is valid "
        f"({count} step{'s' if count != 1 else ''}, {workflow.execution_mode.value})"
    )


# -- graph ---------------------------------------------------------------------------


@main.command()
@_FILE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_graph.FORMATS),
    help="Output format (default: from the --output suffix, else mermaid).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
def graph(file: Path, fmt: str | None, output: Path | None) -> None:
    """Draw the step graph of FILE as Mermaid, Graphviz DOT or SVG.

    Only reads the file: no plugin is loaded.
    """
    try:
        workflow = Workflow.from_file(file)
    except WorkflowFileError as error:
        _fail_with_problems(error, EXIT_USAGE)
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        fmt = {"svg": "svg", "dot": "dot", "gv": "dot"}.get(suffix, "mermaid")
    text = _graph.render(workflow, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


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
