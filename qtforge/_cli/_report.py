"""``qtforge report ID --store runs.db -o report.html``: an execution as one HTML file.

The store must exist: a missing or empty file is refused rather than created. Exit
statuses, as for the other commands on a store: 0 written; 2 bad input (a missing option,
a store that does not exist or cannot be read, no such execution in it, an output path
that cannot be written), with a one-line message and no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import click

from .._report_html import build_report
from ..store import SQLiteStore, StoreError
from ._run import write_output

__all__ = ["report"]


class _Failure(click.ClickException):
    """``Error: message`` on standard error, exit status 2."""

    exit_code = 2


async def _read(path: Path, execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = SQLiteStore(path)
    await store.open()
    try:
        execution = await store.load(execution_id)
        if execution is None:
            raise _Failure(f"no execution with id {execution_id!r} in {path}")
        return execution, await store.events(execution_id)
    finally:
        await store.aclose()


def _render(path: Path, execution_id: str) -> str:
    if path.stat().st_size == 0:
        raise _Failure(f"{str(path)!r} is empty, not a qtforge store")
    try:
        execution, events = anyio.run(_read, path, execution_id)
    except StoreError as exc:
        raise _Failure(exc.message) from None
    return build_report(execution, events)


@click.command()
@click.argument("execution_id", metavar="ID")
@click.option(
    "--store",
    "store_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The SQLite file the execution is recorded in (qtforge run --store).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="The HTML file to write ('-' for standard output).",
)
def report(execution_id: str, store_path: Path, output: Path) -> None:
    """Write a self-contained HTML report of execution ID: its step graph, a timeline
    with one bar per attempt, each step's details and the event log.

    The file needs no network to view. Exits 2 if the store cannot be read, has no such
    execution, or the output cannot be written.
    """
    write_output(output, _render(store_path, execution_id))
