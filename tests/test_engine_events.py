"""The event stream (`AsyncPluginOrchestrator.events`), progress reports and logging (SPEC 6)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import structlog
from plugins_for_tests import Probe, manager_with, run, start, step, workflow

from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode, events

pytestmark = pytest.mark.anyio

TERMINAL_KINDS = {"workflow.completed", "workflow.failed", "workflow.cancelled"}


def kinds(received: Sequence[events.Event]) -> list[tuple[str, str | None]]:
    """``(kind, step_id)`` of each event."""
    return [(event.kind, event.step_id) for event in received]


async def collect(stream: events.EventStream, within: float = 5.0) -> list[events.Event]:
    """Every event of a stream that ends (a per-execution one, or any after the close)."""
    with anyio.fail_after(within):
        return [event async for event in stream]


# -- sequences ----------------------------------------------------------------------------------


async def test_a_small_workflow_emits_the_documented_sequence() -> None:
    """A two-step run yields workflow.started, then per step step.started and
    step.completed (carrying the workflow's progress), then workflow.completed, each typed
    and carrying its ids and details."""
    wall_before = time.time()
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        o.register_workflow(workflow("small", step("a"), step("b", after=["a"]))).value()
        stream = o.events()
        execution_id = (await o.execute_workflow("small")).value()
    received = await collect(stream)
    wall_after = time.time()
    assert kinds(received) == [
        ("workflow.started", None),
        ("step.started", "a"),
        ("step.completed", "a"),
        ("step.started", "b"),
        ("step.completed", "b"),
        ("workflow.completed", None),
    ]
    types = [
        events.WorkflowStarted,
        events.StepStarted,
        events.StepCompleted,
        events.StepStarted,
        events.StepCompleted,
        events.WorkflowCompleted,
    ]
    assert [type(event) for event in received] == types
    assert {(event.execution_id, event.workflow_id) for event in received} == {
        (execution_id, "small")
    }
    stamps = [event.timestamp for event in received]
    assert stamps == sorted(stamps)
    assert wall_before - 0.01 <= stamps[0] <= stamps[-1] <= wall_after + 0.01
    started, step_started, completed = received[:3]
    assert isinstance(started, events.WorkflowStarted)
    assert started.total_steps == 2
    assert isinstance(step_started, events.StepStarted)
    assert step_started.attempt == 1
    assert isinstance(completed, events.StepCompleted)
    assert (completed.attempt, completed.duration_ms >= 0) == (1, True)
    assert [event.progress for event in received if isinstance(event, events.StepFinished)] == [
        50.0,
        100.0,
    ]
    finished = received[-1]
    assert isinstance(finished, events.WorkflowCompleted)
    assert finished.duration_ms >= 0


async def test_retries_skips_failures_and_cancellations_emit_their_events() -> None:
    """A retried, a failed, a skipped and a cancelled step each announce it, with reason,
    delay and error, and the failed workflow ends with workflow.failed."""
    built = workflow(
        "mixed",
        step("soft", "fail", critical=False),
        step("after_soft", after=["soft"]),
        step("flaky", "fail", params={"times": 1}, max_retries=1, retry_delay=10, retry_jitter=0),
        step("hard", "fail", params={"message": "fatal"}),
        step("never"),
    )
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        execution_id = await start(o, built)
        received = await collect(o.events(execution_id))
    steps_only = [pair for pair in kinds(received) if pair[0] != "progress"]
    assert steps_only == [
        ("workflow.started", None),
        ("step.started", "soft"),
        ("step.failed", "soft"),
        ("step.skipped", "after_soft"),
        ("step.started", "flaky"),
        ("step.retrying", "flaky"),
        ("step.started", "flaky"),
        ("step.completed", "flaky"),
        ("step.started", "hard"),
        ("step.failed", "hard"),
        ("step.cancelled", "never"),
        ("workflow.failed", None),
    ]
    by_kind = {(event.kind, event.step_id): event for event in received}
    skipped = by_kind["step.skipped", "after_soft"]
    assert isinstance(skipped, events.StepSkipped)
    assert skipped.reason == "dependency 'soft' failed"
    retrying = by_kind["step.retrying", "flaky"]
    assert isinstance(retrying, events.StepRetrying)
    assert (retrying.attempt, retrying.delay, retrying.error_code) == (1, 0.01, "ExecutionFailed")
    assert retrying.error.endswith("boom #1")
    failed = by_kind["step.failed", "hard"]
    assert isinstance(failed, events.StepFailed)
    assert (failed.attempt, failed.error_code) == (1, "ExecutionFailed")
    assert failed.error.endswith("fatal #1")
    ended = received[-1]
    assert isinstance(ended, events.WorkflowFailed)
    assert ended.error_code == "ExecutionFailed"
    assert "'hard'" in ended.error


async def test_a_cancelled_execution_ends_with_workflow_cancelled() -> None:
    """Cancelling a run emits step.cancelled for its running step, then workflow.cancelled."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        execution_id = await start(o, workflow("stop", step("s", "hang")))
        stream = o.events(execution_id)
        await probe.started("s").wait()
        (await o.cancel_workflow(execution_id)).value()
        received = await collect(stream)
    assert kinds(received) == [
        ("workflow.started", None),
        ("step.started", "s"),
        ("step.cancelled", "s"),
        ("workflow.cancelled", None),
    ]
    assert isinstance(received[-1], events.WorkflowCancelled)


# -- streams --------------------------------------------------------------------------------------


async def test_an_execution_stream_has_only_its_events_and_ends_after_the_last() -> None:
    """events(execution_id) yields that execution's events only and ends after its terminal
    event, while the orchestrator and other executions go on."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        o.register_workflow(workflow("w", step("s", params={"sleep": 0.01}))).value()
        first = (await o.execute_workflow("w", async_execution=True)).value()
        first_stream = o.events(first)
        other = await start(o, workflow("other", step("h", "hang")))
        received = await collect(first_stream)
        other_still_running = (await o.get_workflow_status(other)).value()["status"]
        (await o.cancel_workflow(other)).value()
    assert {event.execution_id for event in received} == {first}
    assert received[-1].kind == "workflow.completed"
    assert [event.kind for event in received].count("workflow.completed") == 1
    assert other_still_running == "running"


async def test_a_stream_for_a_finished_execution_is_empty_and_ended() -> None:
    """events(execution_id) for an execution that has already finished ends at once."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, workflow("done", step("s")))
        received = await collect(o.events(results["execution_id"]), within=1.0)
    assert received == []


async def test_the_global_stream_sees_every_execution_until_the_orchestrator_closes() -> None:
    """events() yields the events of every execution and ends when the orchestrator closes."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        stream = o.events()
        one = (await run(o, workflow("one", step("s"))))["execution_id"]
        two = (await run(o, workflow("two", step("s"))))["execution_id"]
    received = await collect(stream)
    terminal = [event.execution_id for event in received if event.kind in TERMINAL_KINDS]
    assert terminal == [one, two]


async def test_a_slow_consumer_never_stalls_the_engine_and_learns_what_it_lost() -> None:
    """A subscriber with buffer=2 that reads nothing does not hold the run back; it then gets
    an EventsDropped event with the number lost, followed by the newest two events."""
    built = workflow("busy", *(step(f"s{i}") for i in range(10)))
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        everything = o.events()
        slow = o.events(buffer=2)
        with anyio.fail_after(5):
            results = await run(o, built)
    assert results["status"] == "completed"
    full = await collect(everything)
    kept = await collect(slow)
    assert len(full) > 10
    dropped = kept[0]
    assert isinstance(dropped, events.EventsDropped)
    assert dropped.kind == "events.dropped"
    assert dropped.count == len(full) - 2
    assert dropped.execution_id == results["execution_id"]
    assert kept[1:] == full[-2:]


class Noop:
    """A plugin whose step never suspends."""

    plugin_id = "noop"

    async def run(self) -> None:
        return None


async def test_a_consumer_that_keeps_up_loses_nothing_to_steps_that_never_suspend() -> None:
    """Thousands of steps that never suspend do not grow the worker pool until an idle
    subscriber with the default buffer is starved: it receives every event, none dropped."""
    count = 30_000  # three times the default buffer
    built = workflow(
        "flood",
        *(step(f"s{i}", "run", plugin="noop") for i in range(count)),
        mode=ExecutionMode.Parallel,
    )
    received: list[events.Event] = []

    async def consume(stream: events.EventStream) -> None:
        async for event in stream:
            received.append(event)
            if event.kind in TERMINAL_KINDS:
                return

    async with (
        AsyncPluginOrchestrator(manager_with(Noop())) as o,
        anyio.create_task_group() as task_group,
    ):
        task_group.start_soon(consume, o.events())
        results = await run(o, built)
    assert results["status"] == "completed"
    assert not [event for event in received if isinstance(event, events.EventsDropped)]
    assert len(received) == 2 * count + 2


async def test_events_are_immutable() -> None:
    """Assigning to any field of an event raises."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        stream = o.events()
        await run(o, workflow("frozen", step("s")))
    received = await collect(stream)
    event = received[0]
    with pytest.raises(AttributeError):
        event.step_id = "forged"  # type: ignore[misc]  # the point of the test
    with pytest.raises(AttributeError):
        event.timestamp = 0.0  # type: ignore[misc]  # the point of the test
    assert event.step_id is None


# -- progress reports -----------------------------------------------------------------------------


async def test_step_progress_reports_reach_events_and_status() -> None:
    """report_progress from an async step and from a sync step in a worker thread yields
    progress events and moves the status' progress before the steps finish."""
    probe = Probe()
    built = workflow(
        "reports",
        step("loop", "report", params={"fraction": 0.5}),
        step("thread", "report_sync", params={"fraction": 0.25}),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        execution_id = await start(o, built)
        stream = o.events(execution_id)
        reports: list[events.Progress] = []
        with anyio.fail_after(5):
            async for event in stream:
                if isinstance(event, events.Progress):
                    reports.append(event)
                if len(reports) == 2:
                    break
        status = (await o.get_workflow_status(execution_id)).value()
        probe.gate().set()
        probe.release.set()
        results = (await o.wait_workflow(execution_id)).value()
    by_step = {event.step_id: event for event in reports}
    assert set(by_step) == {"loop", "thread"}
    assert (by_step["loop"].step_progress, by_step["loop"].message) == (0.5, "loop at 0.5")
    assert (by_step["thread"].step_progress, by_step["thread"].message) == (0.25, "thread at 0.25")
    assert reports[-1].progress == pytest.approx(100 * (0.5 + 0.25) / 2)
    assert status["status"] == "running"
    assert status["progress"] == pytest.approx(37.5)
    assert results["status"] == "completed"


# -- logging ------------------------------------------------------------------------------------


def _noisy_workflow() -> Any:
    return workflow(
        "noisy",
        step("ok"),
        step("soft", "fail", critical=False),
        step("skipped", after=["soft"]),
        step("flaky", "fail", params={"times": 1}, max_retries=1, retry_delay=1, retry_jitter=0),
    )


async def test_an_unconfigured_application_sees_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With neither logging nor structlog configured, a run prints nothing to stdout."""
    assert not structlog.is_configured(), "another test left structlog configured"
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, _noisy_workflow())
    assert results["status"] == "completed"
    assert capsys.readouterr().out == ""


async def test_debug_logging_shows_step_events_bound_to_the_execution(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With qtforge's logger at DEBUG, step events are logged under 'qtforge' with the
    execution id and step id bound."""
    caplog.set_level(logging.DEBUG, logger="qtforge")
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(o, workflow("logged", step("a"), step("b", after=["a"])))
    execution_id = results["execution_id"]
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("qtforge")]
    for event_name in ("step.started", "step.completed"):
        for step_id in ("a", "b"):
            assert any(
                f"event={event_name}" in line
                and f"execution_id={execution_id}" in line
                and f"step_id={step_id}" in line
                for line in lines
            ), (event_name, step_id, lines)
    assert any("event=workflow.completed" in line for line in lines)
