"""Retries: attempts, backoff, jitter, predicates, deadlines and cancellation (SPEC 5).

On trio the tests run on `MockClock(autojump_threshold=0)`, so hours of backoff take no
time and every wait is checked exactly. On asyncio the same tests run on the real clock
with small delays and loose bounds; the delays announced by ``step.retrying`` events are
exact on both.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
import trio.testing
from plugins_for_tests import (
    Call,
    Probe,
    manager_with,
    non_retryable_error,
    run,
    start,
    statuses,
    step,
    workflow,
)

from qtforge import PluginError, PluginErrorCode
from qtforge.orchestration import AsyncPluginOrchestrator, Workflow, WorkflowStep, events

pytestmark = pytest.mark.anyio


@pytest.fixture(
    params=[
        pytest.param("trio-mock-clock", id="trio-mock-clock"),
        pytest.param("asyncio", id="asyncio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    if request.param == "asyncio":
        return "asyncio"
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


def waits(calls: Sequence[Call]) -> list[float]:
    """Seconds between the starts of successive attempts."""
    return [later.started_at - earlier.started_at for earlier, later in itertools.pairwise(calls)]


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long one "unit" of delay is on this backend, and whether waits are exact."""

    unit_ms: float
    exact: bool

    @property
    def unit(self) -> float:
        """One unit in seconds."""
        return self.unit_ms / 1000

    def assert_gaps(self, calls: Sequence[Call], expected: Sequence[tuple[float, float]]) -> None:
        """The waits between attempts lie within `expected` (low, high) bounds, in units."""
        gaps = [wait / self.unit for wait in waits(calls)]
        assert len(gaps) == len(expected), gaps
        for gap, (low, high) in zip(gaps, expected, strict=True):
            if self.exact:
                assert low - 1e-9 <= gap <= high + 1e-9, gaps
            else:  # the real clock: a loaded machine delays some starts more than others
                assert low - 0.5 <= gap <= high + 10, gaps


@pytest.fixture
def timing(anyio_backend: Any) -> Timing:
    if anyio_backend == "asyncio":
        return Timing(unit_ms=20, exact=False)
    return Timing(unit_ms=1_000, exact=True)


def flaky(step_id: str, timing: Timing, *, times: int | None = None, **fields: Any) -> WorkflowStep:
    """A step failing its first `times` attempts (all if None), retried with exact waits."""
    options: dict[str, Any] = {"retry_delay": timing.unit_ms, "retry_jitter": 0.0, **fields}
    return step(step_id, "fail", params={"times": times, "message": step_id}, **options)


def exactly(*units: float) -> list[tuple[float, float]]:
    return [(unit, unit) for unit in units]


async def run_with_delays(
    o: AsyncPluginOrchestrator, built: Workflow
) -> tuple[dict[str, Any], list[float]]:
    """Run `built`; return its results and the delays (s) its step.retrying events announced."""
    execution_id = await start(o, built)
    announced = [
        event.delay
        async for event in o.events(execution_id)
        if isinstance(event, events.StepRetrying)
    ]
    return (await o.get_workflow_results(execution_id)).value(), announced


# -- attempts and backoff -----------------------------------------------------------------------


async def test_retries_back_off_exponentially_up_to_the_cap(timing: Timing) -> None:
    """Waits double from retry_delay up to retry_max_delay; when retries run out the step
    fails with the last attempt's error."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results, announced = await run_with_delays(
            o,
            workflow(
                "backoff",
                flaky("s", timing, max_retries=5, retry_max_delay=5 * timing.unit_ms),
            ),
        )
    assert announced == pytest.approx([timing.unit * n for n in (1, 2, 4, 5, 5)])
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"], entry["error_code"]) == (
        "failed",
        6,
        "ExecutionFailed",
    )
    assert entry["error"].endswith("RuntimeError: s #6")
    assert results["status"] == "failed"
    assert [call.attempt for call in probe.calls] == [1, 2, 3, 4, 5, 6]
    timing.assert_gaps(probe.calls, exactly(1, 2, 4, 5, 5))


async def test_a_step_that_recovers_completes_with_its_attempts_counted(timing: Timing) -> None:
    """A step failing twice then succeeding completes on attempt 3, with its result."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o, workflow("recover", flaky("s", timing, times=2, max_retries=3, retry_backoff=3.0))
        )
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"]) == ("completed", 3)
    assert (entry["error"], entry["error_code"]) == (None, None)
    assert entry["result"] == {"recovered_on": 3}
    assert results["data"] == {"recovered_on": 3}
    timing.assert_gaps(probe.calls, exactly(1, 3))


async def test_jitter_shortens_each_wait_by_at_most_its_fraction(timing: Timing) -> None:
    """With retry_jitter=0.5 every wait lies in [delay * 0.5, delay], and they vary."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe), seed=7) as o:
        _, announced = await run_with_delays(
            o,
            workflow(
                "jitter",
                step(
                    "s",
                    "fail",
                    max_retries=8,
                    retry_delay=2 * timing.unit_ms,
                    retry_backoff=1.0,
                    retry_jitter=0.5,
                ),
            ),
        )
    assert len(probe.calls) == 9
    assert len(announced) == 8
    assert all(timing.unit <= delay <= 2 * timing.unit for delay in announced)
    assert len(set(announced)) == 8
    timing.assert_gaps(probe.calls, [(1.0, 2.0)] * 8)


async def test_the_same_seed_gives_the_same_jittered_waits(timing: Timing) -> None:
    """Two orchestrators built with the same seed announce the same jittered retry delays."""
    seen = []
    for _ in range(2):
        async with AsyncPluginOrchestrator(manager_with(Probe()), seed=42) as o:
            _, announced = await run_with_delays(
                o,
                workflow(
                    "seeded",
                    step("s", "fail", max_retries=4, retry_delay=timing.unit_ms, retry_jitter=0.9),
                ),
            )
        seen.append(announced)
    assert len(seen[0]) == 4
    assert seen[0] == seen[1]


async def test_a_timed_out_attempt_is_retried(timing: Timing) -> None:
    """Each attempt gets its own timeout; timed-out attempts are retried, and the last
    Timeout is the step's error."""
    probe = Probe()
    hanging = step(
        "s",
        "hang",
        timeout=timing.unit_ms,
        max_retries=2,
        retry_delay=timing.unit_ms,
        retry_jitter=0.0,
    )
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(o, workflow("slow", hanging))
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"], entry["error_code"]) == ("failed", 3, "Timeout")
    assert probe.cancelled == ["s", "s", "s"]
    timing.assert_gaps(probe.calls, exactly(1 + 1, 1 + 2))


# -- which errors are retried -------------------------------------------------------------------


async def test_step_retry_on_decides_which_errors_are_retried(timing: Timing) -> None:
    """A step's retry_on predicate retries the errors it accepts and no others."""
    probe = Probe()

    def transient(error: Exception) -> bool:
        return "transient" in str(error)

    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "predicate",
                step(
                    "transient",
                    "fail",
                    critical=False,
                    max_retries=2,
                    retry_on=transient,
                    retry_delay=timing.unit_ms,
                    params={"message": "transient"},
                ),
                step(
                    "fatal",
                    "fail",
                    critical=False,
                    max_retries=2,
                    retry_on=transient,
                    retry_delay=timing.unit_ms,
                    params={"message": "fatal"},
                ),
            ),
        )
    assert statuses(results) == {"transient": "failed", "fatal": "failed"}
    assert results["steps"]["transient"]["attempts"] == 3
    assert results["steps"]["fatal"]["attempts"] == 1
    assert results["steps"]["fatal"]["error"].endswith("RuntimeError: fatal #1")


async def test_orchestrator_retry_on_applies_to_steps_without_their_own(timing: Timing) -> None:
    """The orchestrator's retry_on governs steps with no retry_on; a step's own one wins."""
    probe = Probe()

    def never(error: Exception) -> bool:
        return False

    def always(error: Exception) -> bool:
        return True

    async with AsyncPluginOrchestrator(manager_with(probe), retry_on=never) as o:
        results = await run(
            o,
            workflow(
                "fallback",
                flaky("plain", timing, max_retries=2, critical=False),
                flaky("own", timing, max_retries=2, critical=False, retry_on=always),
            ),
        )
    assert results["steps"]["plain"]["attempts"] == 1
    assert results["steps"]["own"]["attempts"] == 3


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(non_retryable_error("no point"), "ExecutionFailed", id="non_retryable-marker"),
        pytest.param(
            PluginError(PluginErrorCode.InvalidParameters, "bad row"),
            "InvalidParameters",
            id="InvalidParameters",
        ),
        pytest.param(
            PluginError(PluginErrorCode.CommandNotFound, "no such verb"),
            "CommandNotFound",
            id="CommandNotFound",
        ),
        pytest.param(
            PluginError(PluginErrorCode.PluginNotFound, "no such plugin"),
            "PluginNotFound",
            id="PluginNotFound",
        ),
    ],
)
async def test_non_retryable_errors_raised_by_a_step_are_not_retried(
    timing: Timing, error: Exception, code: str
) -> None:
    """A step raising an error marked non_retryable, or a PluginError whose code says the step
    itself is wrong, fails on its first attempt despite max_retries."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "final",
                step(
                    "s",
                    "raise_error",
                    params={"error": error},
                    max_retries=3,
                    retry_delay=timing.unit_ms,
                ),
            ),
        )
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"], entry["error_code"]) == ("failed", 1, code)
    assert len(probe.calls) == 1


@pytest.mark.parametrize(
    ("plugin", "method", "code"),
    [
        pytest.param("nobody", "emit", "PluginNotFound", id="unknown-plugin"),
        pytest.param("probe", "no_such_method", "CommandNotFound", id="unknown-method"),
        pytest.param("probe", "rendezvous", "InvalidParameters", id="missing-argument"),
    ],
)
async def test_misconfigured_steps_are_not_retried(
    timing: Timing, plugin: str, method: str, code: str
) -> None:
    """An unknown plugin or method, or a missing argument, fails on the first attempt."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(
            o,
            workflow(
                "wrong",
                step("s", method, plugin=plugin, max_retries=3, retry_delay=timing.unit_ms),
            ),
        )
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"], entry["error_code"]) == ("failed", 1, code)


# -- deadlines and cancellation -----------------------------------------------------------------


async def test_no_retry_starts_that_cannot_begin_before_the_workflow_deadline(
    timing: Timing,
) -> None:
    """A retry whose wait would end past the workflow's deadline is not attempted: the step
    fails at once with its last error rather than the workflow timing out."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        began = anyio.current_time()
        results = await run(
            o,
            workflow(
                "deadline",
                flaky("s", timing, max_retries=5, retry_backoff=10.0),
                timeout=8 * timing.unit_ms,  # room for the 1-unit wait, not the 10-unit one
            ),
        )
        elapsed = (anyio.current_time() - began) / timing.unit
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"], entry["error_code"]) == (
        "failed",
        2,
        "ExecutionFailed",
    )
    assert entry["error"].endswith("RuntimeError: s #2")
    assert (results["status"], results["error_code"]) == ("failed", "ExecutionFailed")
    timing.assert_gaps(probe.calls, exactly(1))
    if timing.exact:
        assert elapsed == pytest.approx(1)
    else:
        assert elapsed < 8


async def test_cancelling_during_a_retry_wait_ends_the_step_cancelled(timing: Timing) -> None:
    """A step waiting to retry shows 'retrying'; cancelling the execution then stops the wait
    at once and the step ends Cancelled after one attempt."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        built = workflow(
            "wait", flaky("s", timing, max_retries=3, retry_delay=100 * timing.unit_ms)
        )
        execution_id = await start(o, built)
        async with o.events(execution_id) as stream:
            async for event in stream:
                if isinstance(event, events.StepRetrying):
                    break
        waiting = (await o.get_workflow_status(execution_id)).value()
        asked = anyio.current_time()
        (await o.cancel_workflow(execution_id)).value()
        results = (await o.wait_workflow(execution_id)).value()
        waited = (anyio.current_time() - asked) / timing.unit
    assert waiting["steps"] == {"s": "retrying"}
    assert waiting["running_steps"] == ["s"]
    assert (results["status"], results["error_code"]) == ("cancelled", "OperationCancelled")
    entry = results["steps"]["s"]
    assert (entry["status"], entry["attempts"]) == ("cancelled", 1)
    assert len(probe.calls) == 1
    assert waited < (1e-9 if timing.exact else 50)
