"""Pausing and resuming a live execution: `pause_workflow` and `resume_workflow`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from plugins_for_tests import manager_with, start, statuses, step, workflow

from qtforge import PluginErrorCode
from qtforge.orchestration import (
    AsyncPluginOrchestrator,
    ExecutionMode,
    PluginOrchestrator,
    StepContext,
    Workflow,
)

PROMPTLY = 5.0  # seconds: far above any real scheduling delay


class Gated:
    """Async steps that wait for their own gate; registered as ``"gated"``."""

    plugin_id = "gated"

    def __init__(self) -> None:
        self.ran: list[str] = []
        self._gates: dict[str, anyio.Event] = {}
        self._started: dict[str, anyio.Event] = {}

    def gate(self, step_id: str) -> anyio.Event:
        return self._gates.setdefault(step_id, anyio.Event())

    def started(self, step_id: str) -> anyio.Event:
        return self._started.setdefault(step_id, anyio.Event())

    async def wait(self, context: StepContext) -> str:
        """Record the start, then return the step id once the step's gate opens."""
        self.ran.append(context.step_id)
        self.started(context.step_id).set()
        await self.gate(context.step_id).wait()
        return context.step_id


def gated(step_id: str, after: list[str] | None = None) -> Any:
    return step(step_id, "wait", plugin="gated", after=after or [])


async def status_of(o: AsyncPluginOrchestrator, execution_id: str) -> dict[str, Any]:
    status: dict[str, Any] = (await o.get_workflow_status(execution_id)).value()
    return status


async def until(
    o: AsyncPluginOrchestrator, execution_id: str, holds: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the execution's status until `holds` is true of it; return that status."""
    with anyio.fail_after(PROMPTLY):
        while True:
            status = await status_of(o, execution_id)
            if holds(status):
                return status
            await anyio.sleep(0.001)


async def until_paused(o: AsyncPluginOrchestrator, execution_id: str) -> dict[str, Any]:
    """Wait until the execution reads ``paused``; return that status."""
    return await until(o, execution_id, lambda status: status["status"] == "paused")


def chain() -> Workflow:
    return workflow("chain", gated("a"), gated("b", ["a"]), gated("c", ["b"]))


pytestmark = pytest.mark.anyio


async def test_a_running_step_finishes_and_no_new_step_starts_until_resumed() -> None:
    """After pause_workflow the running step goes on to complete, the status reads 'running'
    until it has, then 'paused' with the next steps pending; resume_workflow runs them."""
    plugin = Gated()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        execution_id = await start(o, chain())
        with anyio.fail_after(PROMPTLY):
            await plugin.started("a").wait()
        paused = await o.pause_workflow(execution_id)
        while_running = await status_of(o, execution_id)
        plugin.gate("a").set()
        status = await until_paused(o, execution_id)
        for _ in range(20):  # a step that wrongly started would have started by now
            await anyio.lowlevel.checkpoint()
        ran_while_paused = list(plugin.ran)
        plugin.gate("b").set()
        plugin.gate("c").set()
        with anyio.fail_after(PROMPTLY):
            resumed = await o.resume_workflow(execution_id)
        results = (await o.get_workflow_results(execution_id)).value()
    assert paused.has_value()
    assert while_running["status"] == "running"
    assert status["steps"] == {"a": "completed", "b": "pending", "c": "pending"}
    assert status["running_steps"] == []
    assert ran_while_paused == ["a"]
    assert resumed.value() == execution_id
    assert results["status"] == "completed"
    assert statuses(results) == {"a": "completed", "b": "completed", "c": "completed"}
    assert plugin.ran == ["a", "b", "c"]


async def test_every_running_parallel_step_finishes_before_the_pause_takes_hold() -> None:
    """In parallel mode all running steps finish after the pause; their dependent stays
    pending, and a non-blocking resume lets the execution finish."""
    plugin = Gated()
    built = workflow(
        "fan-in",
        gated("x"),
        gated("y"),
        gated("z", ["x", "y"]),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        execution_id = await start(o, built)
        with anyio.fail_after(PROMPTLY):
            await plugin.started("x").wait()
            await plugin.started("y").wait()
        (await o.pause_workflow(execution_id)).value()
        plugin.gate("x").set()
        half = await until(o, execution_id, lambda status: status["steps"]["x"] == "completed")
        plugin.gate("y").set()
        status = await until_paused(o, execution_id)
        plugin.gate("z").set()
        resumed = await o.resume_workflow(execution_id, async_execution=True)
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
    assert half["status"] == "running"
    assert half["running_steps"] == ["y"]
    assert status["steps"] == {"x": "completed", "y": "completed", "z": "pending"}
    assert resumed.value() == execution_id
    assert statuses(results) == {"x": "completed", "y": "completed", "z": "completed"}


async def test_pausing_before_the_execution_starts_runs_no_step() -> None:
    """An execution paused before its task first ran becomes 'paused' with no step started."""
    plugin = Gated()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        execution_id = await start(o, chain())
        (await o.pause_workflow(execution_id)).value()
        status = await until_paused(o, execution_id)
        (await o.cancel_workflow(execution_id)).value()
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
    assert status["steps"] == {"a": "pending", "b": "pending", "c": "pending"}
    assert plugin.ran == []
    assert results["status"] == "cancelled"


async def test_cancelling_a_paused_execution_cancels_its_pending_steps() -> None:
    """cancel_workflow on a paused execution ends it 'cancelled', with the steps that had
    not run 'cancelled' and the completed one kept."""
    plugin = Gated()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        execution_id = await start(o, chain())
        with anyio.fail_after(PROMPTLY):
            await plugin.started("a").wait()
        (await o.pause_workflow(execution_id)).value()
        plugin.gate("a").set()
        await until_paused(o, execution_id)
        cancelled = await o.cancel_workflow(execution_id)
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
        resumed = await o.resume_workflow(execution_id)
    assert cancelled.has_value()
    assert (results["status"], results["error_code"]) == ("cancelled", "OperationCancelled")
    assert statuses(results) == {"a": "completed", "b": "cancelled", "c": "cancelled"}
    assert plugin.ran == ["a"]
    assert resumed.error().code is PluginErrorCode.InvalidState


async def test_a_pause_requested_as_the_last_step_runs_lets_the_execution_complete() -> None:
    """Pausing while the last step runs does not hold the execution: it completes."""
    plugin = Gated()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        execution_id = await start(o, workflow("one", gated("only")))
        with anyio.fail_after(PROMPTLY):
            await plugin.started("only").wait()
        (await o.pause_workflow(execution_id)).value()
        plugin.gate("only").set()
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
    assert results["status"] == "completed"


async def test_pausing_unknown_finished_or_paused_executions_is_refused() -> None:
    """pause_workflow answers NotFound for an unknown id, InvalidState for a finished,
    an already paused or a cancelling execution; resume_workflow answers InvalidState for
    a running execution that is not paused."""
    plugin = Gated()
    plugin.gate("a").set()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        unknown = await o.pause_workflow("nope")
        o.register_workflow(workflow("quick", gated("a"))).value()
        finished_id = (await o.execute_workflow("quick")).value()
        finished = await o.pause_workflow(finished_id)
        running_id = await start(o, workflow("slow", gated("s")))
        with anyio.fail_after(PROMPTLY):
            await plugin.started("s").wait()
        not_paused = await o.resume_workflow(running_id)
        (await o.pause_workflow(running_id)).value()
        twice = await o.pause_workflow(running_id)
        (await o.cancel_workflow(running_id)).value()
        cancelling = await o.resume_workflow(running_id)
        await o.wait_workflow(running_id)
    assert unknown.error().code is PluginErrorCode.NotFound
    assert finished.error().code is PluginErrorCode.InvalidState
    assert "completed" in finished.error().message
    assert not_paused.error().code is PluginErrorCode.InvalidState
    assert twice.error().code is PluginErrorCode.InvalidState
    assert "already paused" in twice.error().message
    assert cancelling.error().code is PluginErrorCode.InvalidState


class Blocking:
    """A sync step that waits for `release`; registered as ``"blocking"``."""

    plugin_id = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.ran: list[str] = []

    def work(self, context: StepContext) -> str:
        self.ran.append(context.step_id)
        self.started.set()
        self.release.wait(PROMPTLY)
        return context.step_id


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_facade_pauses_and_resumes(backend: str) -> None:
    """PluginOrchestrator.pause_workflow holds the next step back until resume_workflow,
    which blocks until the execution has finished."""
    plugin = Blocking()
    built = workflow(
        "sync-chain",
        step("first", "work", plugin="blocking"),
        step("second", "work", plugin="blocking", after=["first"]),
    )
    with PluginOrchestrator(manager_with(plugin), backend=backend) as o:
        o.register_workflow(built).value()
        execution_id = o.execute_workflow("sync-chain", async_execution=True).value()
        assert plugin.started.wait(PROMPTLY)
        o.pause_workflow(execution_id).value()
        plugin.release.set()
        status = o.get_workflow_status(execution_id).value()
        for _ in range(int(PROMPTLY / 0.001)):
            if status["status"] == "paused":
                break
            threading.Event().wait(0.001)
            status = o.get_workflow_status(execution_id).value()
        resumed = o.resume_workflow(execution_id)
        results = o.get_workflow_results(execution_id).value()
    assert status["status"] == "paused"
    assert status["steps"] == {"first": "completed", "second": "pending"}
    assert resumed.value() == execution_id
    assert statuses(results) == {"first": "completed", "second": "completed"}
    assert plugin.ran == ["first", "second"]
