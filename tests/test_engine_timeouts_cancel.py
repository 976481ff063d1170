"""Timeouts, cancellation, step errors and plugin lifecycle of `AsyncPluginOrchestrator`."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest
from plugins_for_tests import (
    AsyncLifecycle,
    BrokenInitialize,
    Probe,
    SyncLifecycle,
    manager_with,
    run,
    start,
    statuses,
    step,
    workflow,
)

from qtforge import PluginErrorCode, PluginManager
from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode

pytestmark = pytest.mark.anyio

PROMPTLY = 5.0  # seconds: far below THREAD_WAIT_LIMIT, far above any real scheduling delay
SYNC_TIMEOUT_MS = 300  # long enough for a worker thread to start even on a loaded machine


async def eventually(condition: Callable[[], bool], within: float = PROMPTLY) -> None:
    """Poll `condition` (state changed by a worker thread) until it holds."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110  # worker threads change it: nothing to await
            await anyio.sleep(0.005)


# -- step timeouts ----------------------------------------------------------------------------


async def test_async_step_over_its_timeout_fails_with_timeout() -> None:
    """An async step running past its timeout is cancelled and Failed with code Timeout."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(PROMPTLY):
            results = await run(o, workflow("slow", step("s", "hang", timeout=30), step("next")))
    entry = results["steps"]["s"]
    assert (entry["status"], entry["error_code"]) == ("failed", "Timeout")
    assert "'s'" in entry["error"]
    assert "30 ms" in entry["error"]
    assert probe.cancelled == ["s"]
    assert (results["status"], results["error_code"]) == ("failed", "Timeout")
    assert statuses(results) == {"s": "failed", "next": "cancelled"}


@pytest.mark.parametrize("no_bound", [0, None])
async def test_a_zero_or_none_timeout_means_no_bound(no_bound: float | None) -> None:
    """timeout=0 or None lets a step run as long as it needs."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(
            o, workflow("unbounded", step("s", timeout=no_bound, params={"sleep": 0.05}))
        )
    assert statuses(results) == {"s": "completed"}


async def test_a_step_raising_timeout_error_itself_is_not_a_timeout() -> None:
    """A step that raises its own TimeoutError fails with ExecutionFailed, not Timeout."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(
            o,
            workflow("own", step("s", "raise_error", params={"error": TimeoutError("remote")})),
        )
    entry = results["steps"]["s"]
    assert (entry["status"], entry["error_code"]) == ("failed", "ExecutionFailed")
    assert "TimeoutError: remote" in entry["error"]


async def test_sync_step_over_its_timeout_is_abandoned_but_keeps_its_thread_token() -> None:
    """A sync step past its timeout fails with Timeout at once, sees context.cancelled, and
    its thread keeps a thread-limiter token until it really ends."""
    probe = Probe()
    blocking = step("s", "block_sync", timeout=SYNC_TIMEOUT_MS, params={"cooperative": False})
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        assert o._thread_limiter.borrowed_tokens == 0
        began = anyio.current_time()
        results = await run(o, workflow("stuck", blocking))
        elapsed = anyio.current_time() - began
        thread_still_running = "s" not in probe.threads_exited
        held_while_running = o._thread_limiter.borrowed_tokens
        probe.release.set()
        await eventually(lambda: "s" in probe.threads_exited)
        await eventually(lambda: o._thread_limiter.borrowed_tokens == 0)
    entry = results["steps"]["s"]
    assert (entry["status"], entry["error_code"], entry["result"]) == ("failed", "Timeout", None)
    assert elapsed < PROMPTLY
    assert [call.step_id for call in probe.calls] == ["s"], "the thread did not start in time"
    assert thread_still_running
    assert held_while_running == 1
    assert probe.saw_cancelled == {"s": True}
    assert results["data"] == {}


async def test_an_abandoned_thread_still_counts_against_the_thread_limit() -> None:
    """With thread_limit=1, a sync step after one that timed out starts only once the
    abandoned thread has really ended."""
    probe = Probe()
    built = workflow(
        "limited",
        step(
            "stuck",
            "block_sync",
            timeout=SYNC_TIMEOUT_MS,
            critical=False,
            params={"cooperative": False},
        ),
        step("next", "emit_sync"),
    )
    async with AsyncPluginOrchestrator(manager_with(probe), thread_limit=1) as o:
        execution_id = await start(o, built)
        await eventually(lambda: o.status_now(execution_id).value()["steps"]["stuck"] == "failed")
        await anyio.sleep(0.05)  # time in which "next" would start if the token were free
        started_early = [call.step_id for call in probe.calls]
        probe.release.set()
        results = (await o.wait_workflow(execution_id)).value()
    assert started_early == ["stuck"]
    assert statuses(results) == {"stuck": "failed", "next": "completed"}
    assert probe.threads_exited == ["stuck"]
    assert probe.log.index(("end", "stuck")) < probe.log.index(("start", "next"))


# -- cancel_workflow --------------------------------------------------------------------------


async def test_cancel_stops_running_async_and_sync_steps_and_pending_ones() -> None:
    """Cancelling a running execution cancels async steps, turns sync steps' context.cancelled
    true, and ends the execution and every unfinished step 'cancelled'."""
    probe = Probe()
    built = workflow(
        "cancel",
        step("done"),
        step("async", "hang", after=["done"]),
        step("sync", "block_sync", after=["done"]),
        step("pending", after=["async"]),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        execution_id = await start(o, built)
        with anyio.fail_after(PROMPTLY):
            await probe.started("async").wait()
            await probe.started("sync").wait()
        cancelled = await o.cancel_workflow(execution_id)
        with anyio.fail_after(PROMPTLY):
            results = (await o.wait_workflow(execution_id)).value()
        await eventually(lambda: "sync" in probe.threads_exited)
        status = (await o.get_workflow_status(execution_id)).value()
    assert cancelled.has_value()
    assert (results["status"], results["error_code"]) == ("cancelled", "OperationCancelled")
    assert (status["status"], status["error_code"]) == ("cancelled", "OperationCancelled")
    assert statuses(results) == {
        "done": "completed",
        "async": "cancelled",
        "sync": "cancelled",
        "pending": "cancelled",
    }
    assert probe.cancelled == ["async"]
    assert probe.saw_cancelled == {"sync": True}


async def test_cancelling_before_the_execution_starts_runs_no_step() -> None:
    """An execution cancelled before its task first ran ends 'cancelled' with every step
    'cancelled' and no plugin call."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        execution_id = await start(o, workflow("early", step("a"), step("b", after=["a"])))
        (await o.cancel_workflow(execution_id)).value()
        results = (await o.wait_workflow(execution_id)).value()
    assert (results["status"], results["error_code"]) == ("cancelled", "OperationCancelled")
    assert statuses(results) == {"a": "cancelled", "b": "cancelled"}
    assert probe.calls == []


async def test_a_critical_failure_turns_a_running_sync_step_cancelled() -> None:
    """When a critical step fails, a sync step running alongside sees context.cancelled and
    ends 'cancelled'."""
    probe = Probe()
    built = workflow(
        "sync-stop",
        step("sync", "block_sync"),
        step("bad", "fail_after_start", params={"other": "sync"}),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(PROMPTLY):
            results = await run(o, built)
        await eventually(lambda: "sync" in probe.threads_exited)
    assert results["status"] == "failed"
    assert statuses(results) == {"sync": "cancelled", "bad": "failed"}
    assert probe.saw_cancelled == {"sync": True}


async def test_closing_the_orchestrator_cancels_running_executions() -> None:
    """Leaving `async with` cancels executions still running; they end 'cancelled'."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        execution_id = await start(o, workflow("open", step("s", "hang"), step("after")))
        await probe.started("s").wait()
    status = o.status_now(execution_id).value()
    assert (status["status"], status["error_code"]) == ("cancelled", "OperationCancelled")
    assert status["steps"] == {"s": "cancelled", "after": "cancelled"}
    assert probe.cancelled == ["s"]


async def test_cancelling_a_finished_execution_is_invalid_state() -> None:
    """cancel_workflow after the execution has completed returns InvalidState."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        o.register_workflow(workflow("quick", step("s"))).value()
        execution_id = (await o.execute_workflow("quick")).value()
        cancelled = await o.cancel_workflow(execution_id)
        status = (await o.get_workflow_status(execution_id)).value()
    assert cancelled.error().code is PluginErrorCode.InvalidState
    assert execution_id in cancelled.error().message
    assert status["status"] == "completed"


async def test_cancelling_twice_is_invalid_state() -> None:
    """A second cancel_workflow, right after the first or after the execution ended, returns
    InvalidState: the execution is already being cancelled."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        execution_id = await start(o, workflow("twice", step("s", "hang")))
        await anyio.lowlevel.checkpoint()
        first = await o.cancel_workflow(execution_id)
        second = await o.cancel_workflow(execution_id)
        results = (await o.wait_workflow(execution_id)).value()
        third = await o.cancel_workflow(execution_id)
    assert first.has_value()
    assert third.error().code is PluginErrorCode.InvalidState
    assert statuses(results) == {"s": "cancelled"}
    assert second.has_error(), "a second cancel while the first is unwinding was accepted"
    assert second.error().code is PluginErrorCode.InvalidState


async def test_unknown_ids_are_not_found() -> None:
    """An unknown execution id gives NotFound from cancel, status, results and wait; an
    unknown workflow id gives NotFound from execute."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        errors = [
            (await o.cancel_workflow("nope")).error(),
            (await o.get_workflow_status("nope")).error(),
            (await o.get_workflow_results("nope")).error(),
            (await o.wait_workflow("nope")).error(),
        ]
        executed = await o.execute_workflow("no-such-workflow")
    for error in errors:
        assert error.code is PluginErrorCode.NotFound
        assert "'nope'" in error.message
    assert executed.error().code is PluginErrorCode.NotFound
    assert "'no-such-workflow'" in executed.error().message


async def test_workflow_timeout_fails_the_execution_with_timeout() -> None:
    """An execution running past Workflow.set_timeout fails with Timeout; the running and
    pending steps end 'cancelled'."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(PROMPTLY):
            results = await run(
                o,
                workflow("deadline", step("ok"), step("s", "hang"), step("after"), timeout=50),
            )
    assert (results["status"], results["error_code"]) == ("failed", "Timeout")
    assert "'deadline'" in results["error"]
    assert statuses(results) == {"ok": "completed", "s": "cancelled", "after": "cancelled"}
    assert probe.cancelled == ["s"]


async def test_cancelling_the_caller_of_a_blocking_execute_cancels_the_execution() -> None:
    """Cancelling the task awaiting execute_workflow ends that execution 'cancelled'."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        o.register_workflow(workflow("blocking", step("s", "hang"), step("after"))).value()
        with anyio.fail_after(PROMPTLY):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(o.execute_workflow, "blocking")
                await probe.started("s").wait()
                tasks.cancel_scope.cancel()
        (execution_id,) = o.list_executions()
        status = (await o.get_workflow_status(execution_id)).value()
        results = (await o.get_workflow_results(execution_id)).value()
    assert (status["status"], status["error_code"]) == ("cancelled", "OperationCancelled")
    assert statuses(results) == {"s": "cancelled", "after": "cancelled"}
    assert probe.cancelled == ["s"]


# -- what steps raise and return ------------------------------------------------------------


async def test_a_raising_plugin_fails_its_step_with_a_message_naming_everything() -> None:
    """A plugin exception becomes ExecutionFailed naming the step, plugin, method and
    exception; the workflow's error names the workflow and the step."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, workflow("raising", step("load", "fail", params={"message": "bad"})))
    entry = results["steps"]["load"]
    assert entry["error_code"] == "ExecutionFailed"
    for part in ("'load'", "probe", "fail", "RuntimeError", "bad #1"):
        assert part in entry["error"]
    assert results["error_code"] == "ExecutionFailed"
    assert "'raising'" in results["error"]
    assert "'load'" in results["error"]


class _Makers:
    """Returns objects no serialiser would accept, or that are very large."""

    plugin_id = "makers"

    def __init__(self) -> None:
        self.made: dict[str, object] = {}

    async def lock(self) -> object:
        self.made["lock"] = threading.Lock()
        return self.made["lock"]

    def blob(self) -> object:
        self.made["blob"] = bytes(50_000_000)
        return self.made["blob"]


async def test_unserialisable_and_huge_results_are_returned_as_they_are() -> None:
    """A lock and a 50 MB bytes value complete quickly and come back as the same objects."""
    makers = _Makers()
    async with AsyncPluginOrchestrator(manager_with(makers)) as o:
        began = anyio.current_time()
        results = await run(
            o,
            workflow(
                "odd",
                step("lock", "lock", plugin="makers"),
                step("blob", "blob", plugin="makers"),
            ),
        )
        elapsed = anyio.current_time() - began
    assert statuses(results) == {"lock": "completed", "blob": "completed"}
    for name in ("lock", "blob"):
        assert results["steps"][name]["result"] is makers.made[name]
        assert results["data"][name] is makers.made[name]
    assert elapsed < PROMPTLY


async def test_a_condition_naming_an_unknown_key_fails_with_invalid_configuration() -> None:
    """A condition over a key the input lacks fails the step with InvalidConfiguration,
    quoting the expression and the key."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow("cond", step("s", condition="missing_key > 3"), step("t", after=["s"])),
            {"present": 1},
        )
    entry = results["steps"]["s"]
    assert (entry["status"], entry["error_code"]) == ("failed", "InvalidConfiguration")
    assert "'missing_key > 3'" in entry["error"]
    assert "present" in entry["error"]
    assert statuses(results) == {"s": "failed", "t": "cancelled"}
    assert probe.calls == []


# -- plugin lifecycle and orchestrator state --------------------------------------------------


@pytest.mark.parametrize("plugin_class", [SyncLifecycle, AsyncLifecycle])
async def test_initialize_and_shutdown_hooks_run_once_each(
    plugin_class: type[SyncLifecycle],
) -> None:
    """initialize() runs once before the plugin's first step, shutdown() once when the
    orchestrator closes, however many steps and executions used the plugin."""
    plugin = plugin_class()
    built = workflow(
        "life",
        *(step(f"s{i}", "work", plugin=plugin.plugin_id) for i in range(3)),
        mode=ExecutionMode.Parallel,
    )
    loop_thread = threading.get_ident()
    async with AsyncPluginOrchestrator(manager_with(plugin)) as o:
        first = await run(o, built)
        (await o.execute_workflow("life")).value()
        before_close = list(plugin.events)
    assert first["status"] == "completed"
    assert before_close == ["initialize"] + ["work"] * 6
    assert plugin.events == [*before_close, "shutdown"]
    assert loop_thread not in plugin.hook_threads  # plain hooks run in worker threads


async def test_a_failing_initialize_fails_the_step_with_initialization_failed() -> None:
    """A plugin whose initialize() raises fails its step with InitializationFailed."""
    broken = BrokenInitialize()
    async with AsyncPluginOrchestrator(manager_with(broken)) as o:
        results = await run(o, workflow("init", step("s", "work", plugin="broken")))
    entry = results["steps"]["s"]
    assert (entry["status"], entry["error_code"]) == ("failed", "InitializationFailed")
    assert "'broken'" in entry["error"]
    assert "database unreachable" in entry["error"]
    assert not broken.worked


async def test_execute_after_the_orchestrator_closed_is_invalid_state() -> None:
    """Once `async with` has exited, execute_workflow returns InvalidState."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        o.register_workflow(workflow("later", step("s"))).value()
    executed = await o.execute_workflow("later")
    assert executed.error().code is PluginErrorCode.InvalidState
    assert "closed" in executed.error().message


async def test_execute_on_an_orchestrator_never_entered_is_invalid_state() -> None:
    """An orchestrator used without `async with` returns InvalidState from execute_workflow."""
    o = AsyncPluginOrchestrator(PluginManager())
    o.register_workflow(workflow("never", step("s"))).value()
    executed = await o.execute_workflow("never")
    assert executed.error().code is PluginErrorCode.InvalidState
    assert "async with" in executed.error().message


async def test_an_exception_in_the_async_with_body_comes_out_unwrapped() -> None:
    """What the body of ``async with AsyncPluginOrchestrator()`` raises leaves the block as
    itself, not inside the orchestrator's task group's ExceptionGroup."""
    with pytest.raises(LookupError, match="mine"):
        async with AsyncPluginOrchestrator(manager_with(Probe())):
            raise LookupError("mine")
