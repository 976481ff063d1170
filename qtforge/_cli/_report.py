"""``qtforge report ID --store runs.db -o report.html``: an execution as one HTML file.

The store must exist: a missing or empty file is refused rather than created. Exit
statuses, as for the other commands on a store: 0 written; 2 bad input (a missing option,
a store that does not exist or cannot be read, no such execution in it, an output path
that cannot be written), with a one-line message and no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .._report_html import build_report
from ..orchestration import AsyncPluginOrchestrator
from ._run import load_stored, write_output
from ._stored import EXECUTION_ID, store_option, with_store

__all__ = ["report"]


@click.command()
@EXECUTION_ID
@store_option()
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="The HTML file to write ('-' for standard output).",
)
def report(execution_id: str, store: Path, output: Path) -> None:
    """Write a self-contained HTML report of execution ID: its step graph, a timeline
    with one bar per attempt, each step's details and the event log.

    The file needs no network to view. Exits 2 if the store cannot be read, has no such
    execution, or the output cannot be written.
    """

    async def read(
        orchestrator: AsyncPluginOrchestrator,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        execution = await load_stored(orchestrator, execution_id)
        assert orchestrator.store is not None
        return execution, await orchestrator.store.events(execution_id)

    execution, events = with_store(store, read)
    write_output(output, build_report(execution, events))
