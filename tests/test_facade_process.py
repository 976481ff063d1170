"""The facade in real processes (SPEC 6): a script that never closes its orchestrator
still exits promptly, and Ctrl-C during a blocking execute cancels the execution."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROMPT = 10.0  # seconds a script may take to exit once it should (it needs ~0.3 s)

# Shared by both scripts: a facade on argv[1]'s backend with one workflow whose only step
# prints STARTED and then waits 60 s: as an async step (argv[2] == "async"), as one that
# takes half a second to clean up when cancelled ("async_cleanup"), or as a sync step
# polling its cancellation flag ("sync").
PRELUDE = """
import sys
import threading
import time

import anyio

import qtforge
from qtforge.orchestration import PluginOrchestrator, StepContext, Workflow, WorkflowStep

class Slow:
    plugin_id = "slow"

    def __init__(self) -> None:
        self.started = threading.Event()

    def start(self) -> None:
        print("STARTED", flush=True)
        self.started.set()

    async def wait_async(self) -> None:
        self.start()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            print("STEP CANCELLED", flush=True)
            raise

    async def wait_async_cleanup(self) -> None:
        self.start()
        try:
            await anyio.sleep(60)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.5)

    def wait_sync(self, context: StepContext) -> None:
        self.start()
        deadline = time.monotonic() + 60
        while not context.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)

    def quick(self) -> dict:
        return {"done": True}

    def shutdown(self) -> None:
        print("SHUTDOWN", flush=True)

backend, kind = sys.argv[1], sys.argv[2]
manager = qtforge.PluginManager()
slow = Slow()
manager.register_plugin(slow)
orchestrator = PluginOrchestrator(manager, backend=backend)
step = WorkflowStep("wait", "slow", f"wait_{kind}")
orchestrator.register_workflow(Workflow("slow").add_step(step)).value()
orchestrator.register_workflow(Workflow("quick").add_step(WorkflowStep("q", "slow", "quick")))
"""

NEVER_CLOSED = """
execution_id = orchestrator.execute_workflow("slow", async_execution=True).value()
assert slow.started.wait(10)
status = orchestrator.get_workflow_status(execution_id).value()
print("RUNNING", status["status"], status["current_step"], flush=True)
# the script ends here, with its step running and without orchestrator.close()
"""

INTERRUPTED = """
try:
    orchestrator.execute_workflow("slow")
except KeyboardInterrupt:
    (execution_id,) = orchestrator.list_executions()
    status = orchestrator.get_workflow_status(execution_id).value()
    print("INTERRUPTED", status["status"], status["steps"]["wait"], flush=True)
    results = orchestrator.wait_workflow(execution_id).value()
    print("FINALLY", results["status"], results["steps"]["wait"]["status"], flush=True)
else:
    print("NOT INTERRUPTED", flush=True)
"""


TRIO_HOST = """
import trio

async def main() -> None:
    execution_id = orchestrator.execute_workflow("quick").value()
    print("STATUS", orchestrator.get_workflow_status(execution_id).value()["status"], flush=True)
    orchestrator.close()

trio.run(main)
"""


def start_script(tmp_path: Path, body: str, backend: str, kind: str) -> subprocess.Popen[str]:
    """Start ``PRELUDE + body`` in a fresh interpreter that imports this checkout."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), backend, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )


def finish(process: subprocess.Popen[str]) -> tuple[str, str, float]:
    """Wait (at most `PROMPT` seconds) for `process`; its stdout, stderr and wait time."""
    began = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=PROMPT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail(f"the script did not exit within {PROMPT} s\n{stdout}\n{stderr}")
    return stdout, stderr, time.monotonic() - began


BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def step_cancelled(kind: str) -> list[str]:
    """What the step prints when it is cancelled: only the plain async one prints."""
    return ["STEP CANCELLED"] if kind == "async" else []


@BACKENDS
@pytest.mark.parametrize("kind", ["async", "sync"])
def test_script_that_never_closes_exits_promptly(tmp_path: Path, backend: str, kind: str) -> None:
    """A script leaving a 60 s execution running in an unclosed facade exits at its end,
    promptly, with status 0 and nothing on stderr, after the execution was cancelled and
    the plugin shut down."""
    process = start_script(tmp_path, NEVER_CLOSED, backend, kind)
    stdout, stderr, waited = finish(process)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == [
        "STARTED",
        "RUNNING running wait",
        *step_cancelled(kind),
        "SHUTDOWN",
    ]
    assert stderr == ""
    assert waited < PROMPT


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is a POSIX signal")
@BACKENDS
@pytest.mark.parametrize("kind", ["async", "async_cleanup", "sync"])
def test_ctrl_c_in_blocking_execute_cancels_the_execution(
    tmp_path: Path, backend: str, kind: str
) -> None:
    """SIGINT while `execute_workflow` blocks raises `KeyboardInterrupt` in the caller
    only once the execution and its step have ended ``cancelled`` (even when the step
    takes half a second to clean up), and the script then exits promptly."""
    process = start_script(tmp_path, INTERRUPTED, backend, kind)
    assert process.stdout is not None
    assert process.stdout.readline() == "STARTED\n"
    process.send_signal(signal.SIGINT)
    stdout, stderr, waited = finish(process)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == [
        *step_cancelled(kind),
        "INTERRUPTED cancelled cancelled",
        "FINALLY cancelled cancelled",
        "SHUTDOWN",
    ], stderr
    assert waited < PROMPT


@BACKENDS
def test_facade_works_from_inside_a_trio_run(tmp_path: Path, backend: str) -> None:
    """A facade first used from a coroutine under ``trio.run`` (a thread running its own
    trio loop) starts its engine, executes and closes, as from any other thread."""
    process = start_script(tmp_path, TRIO_HOST, backend, "async")
    stdout, stderr, _ = finish(process)
    assert process.returncode == 0, stderr
    assert stdout.splitlines() == ["STATUS completed", "SHUTDOWN"]
