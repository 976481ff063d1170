"""``qtforge run``: one execution on the async engine, shown as it happens.

The engine (`AsyncPluginOrchestrator`) runs inside ``anyio.run``; the display consumes
its event stream. The first Ctrl-C (or SIGTERM) cancels the execution through the
engine, which stops its steps and ends it ``cancelled``; a second one stops at once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

import anyio

from .._plugins import PluginManager
from ..orchestration import AsyncPluginOrchestrator, Workflow
from ..orchestration import events as ev
from ._display import Display

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "EXIT_OK", "exit_status", "run_workflow", "to_json"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CANCELLED = 130  # what a shell reports for a program stopped by Ctrl-C

_FINAL = (ev.WorkflowCompleted, ev.WorkflowFailed, ev.WorkflowCancelled)


def run_workflow(
    workflow: Workflow,
    plugin_manager: PluginManager,
    initial_data: Mapping[str, Any],
    display: Display,
) -> dict[str, Any]:
    """Run `workflow` to its end and return its results dictionary."""
    return anyio.run(_run, workflow, plugin_manager, dict(initial_data), display)


async def _run(
    workflow: Workflow,
    plugin_manager: PluginManager,
    initial_data: dict[str, Any],
    display: Display,
) -> dict[str, Any]:
    async with AsyncPluginOrchestrator(plugin_manager) as orchestrator:
        orchestrator.register_workflow(workflow).value()
        stream = orchestrator.events()  # before starting, so that no event is missed
        started = await orchestrator.execute_workflow(
            workflow.workflow_id, initial_data, async_execution=True
        )
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


def to_json(results: Mapping[str, Any]) -> str:
    """The results as JSON; values JSON cannot hold become lists or strings."""
    return json.dumps(results, indent=2, default=_jsonable, ensure_ascii=False)
