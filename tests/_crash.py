"""Shared by the crash tests: a workflow of steps run by a child process that a test kills.

The child (`child` runs it to the end, `spawn` hands it over to be signalled) executes
the chain ``s0 -> s1 -> ...`` (or, with ``SHAPE=diamond``, a parallel fan-out and join
of as many steps) with a SQLite store, or resumes a stored execution of it.
Each step appends ``"<step id> <idempotency key>"`` to a side-effect log before it
returns, so a test can count how often each step really ran. The child's environment
steers it: ``KILL_IN_STEP`` (SIGKILL itself in that step, after its side effect),
``HOLD_IN_STEP`` (that step never returns), ``PADS`` (JSON: characters of padding in the
results of some steps), ``PAUSE`` (seconds each step sleeps before and after its side
effect), ``READY`` (print ``ready`` once the orchestrator is open), and qtforge's own
``QTFORGE_CRASH_AT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anyio

from qtforge import PluginManager
from qtforge.orchestration import (
    ExecutionMode,
    PluginOrchestrator,
    StepContext,
    Workflow,
    WorkflowStep,
)

STEPS = 6


class Steps:
    """The chain's plugin: ``inc`` adds one to ``value`` and records itself in ``data``."""

    plugin_id = "steps"

    def __init__(
        self,
        log: Path | None = None,
        *,
        pads: Mapping[str, int] | None = None,
        pause: float = 0.0,
        kill_in: str | None = None,
        hold_in: str | None = None,
    ) -> None:
        self.log = log
        self.pads = dict(pads or {})
        self.pause = pause
        self.kill_in = kill_in
        self.hold_in = hold_in

    async def inc(self, value: int, context: StepContext) -> dict[str, Any]:
        step = context.step_id
        await anyio.sleep(self.pause)
        if self.log is not None:  # one write(2) with O_APPEND: a line is there or not
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(fd, f"{step} {context.idempotency_key}\n".encode())
            os.close(fd)
        await anyio.sleep(self.pause)
        if step == self.kill_in:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self.hold_in:
            await anyio.sleep_forever()
        result: dict[str, Any] = {"value": value + 1, step: value}
        if step in self.pads:
            result[f"{step}_pad"] = "x" * self.pads[step]
        return result


def manager_with(plugin: Steps) -> PluginManager:
    manager = PluginManager()
    manager.register_plugin(plugin).value()
    return manager


# Each step's dependencies, per shape; every shape has `STEPS` steps s0, s1, ...
SHAPES: dict[str, list[list[str]]] = {
    "chain": [[f"s{i - 1}"] if i else [] for i in range(STEPS)],
    "diamond": [[], ["s0"], ["s0"], ["s0"], ["s1", "s2", "s3"], ["s4"]],
}


def crashy(shape: str = "chain") -> Workflow:
    """`STEPS` ``inc`` calls in `shape` (in parallel mode), as workflow ``crashy``."""
    workflow = Workflow("crashy").set_execution_mode(ExecutionMode.Parallel)
    for i, deps in enumerate(SHAPES[shape]):
        workflow.add_step(WorkflowStep(f"s{i}", "steps", "inc", dependencies=deps))
    return workflow


def main() -> None:
    """The child: ``db log backend start|<execution id>``; prints the final data."""
    db, log, backend, command = sys.argv[1:5]
    env = os.environ
    plugin = Steps(
        Path(log),
        pads=json.loads(env.get("PADS", "{}")),
        pause=float(env.get("PAUSE", "0")),
        kill_in=env.get("KILL_IN_STEP"),
        hold_in=env.get("HOLD_IN_STEP"),
    )
    with PluginOrchestrator(manager_with(plugin), backend=backend, store=db) as orchestrator:
        if env.get("READY"):
            print("ready", flush=True)
        if command == "start":
            orchestrator.register_workflow(crashy(env.get("SHAPE", "chain"))).value()
            eid = orchestrator.execute_workflow("crashy", {"value": 0}).value()
        else:
            eid = orchestrator.resume_workflow(command).value()
        print(json.dumps(orchestrator.get_workflow_results(eid).value()["data"]))


def _argv(db: Path, log: Path, backend: str, command: str) -> list[str]:
    main = "from _crash import main; main()"
    return [sys.executable, "-c", main, str(db), str(log), backend, command]


def _environ(env: dict[str, str]) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **env}


def child(
    db: Path, log: Path, backend: str, command: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the child orchestrator to its end; `env` adds crash settings."""
    return subprocess.run(
        _argv(db, log, backend, command),
        env=_environ(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextlib.contextmanager
def spawn(
    db: Path, log: Path, backend: str, command: str, **env: str
) -> Iterator[subprocess.Popen[str]]:
    """Start the child orchestrator for the caller to signal; it is killed and reaped
    on the way out if it still runs (a dead but unreaped child keeps its lease)."""
    with subprocess.Popen(
        _argv(db, log, backend, command),
        env=_environ(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def uninterrupted_data(
    pads: Mapping[str, int] | None = None, shape: str = "chain"
) -> dict[str, Any]:
    """The final data of the same workflow run in memory, without a store."""
    with PluginOrchestrator(manager_with(Steps(pads=pads))) as orchestrator:
        orchestrator.register_workflow(crashy(shape)).value()
        eid = orchestrator.execute_workflow("crashy", {"value": 0}).value()
        data: dict[str, Any] = orchestrator.get_workflow_results(eid).value()["data"]
    return data
