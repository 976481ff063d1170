"""Executors: one contract, run against every executor, then what each one adds.

The contract tests run each behaviour under the engine's default path and under the
``async``, ``thread``, ``process`` and ``dask`` executors, on asyncio and trio:
results, data flow, errors, retries, timeouts, cancellation, status and events must
not depend on where a step runs. To keep them fast, the contract's process executor and
its in-process Dask cluster serve the whole module; the process executor's own tests
start fresh ones.
"""

from __future__ import annotations

import os
import pickle
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from plugins_for_executors import Locked, Work, local_dask_client
from plugins_for_tests import manager_with, run, start, statuses, step, workflow

from qtforge import PluginError, PluginErrorCode
from qtforge.executors import (
    AsyncExecutor,
    DaskExecutor,
    Executor,
    ProcessExecutor,
    RemoteTraceback,
    StepCall,
    ThreadExecutor,
)
from qtforge.orchestration import (
    AsyncPluginOrchestrator,
    ExecutionMode,
    PluginOrchestrator,
    Workflow,
    WorkflowStep,
    events,
)
from qtforge.orchestration._shipping import pack, run_shipped, unpack

EXECUTORS = ["default", "async", "thread", "process", "dask"]
TERMINAL = {"workflow.completed", "workflow.failed", "workflow.cancelled"}


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """One in-process Dask cluster for the module (it starts in a fraction of a second)."""
    with local_dask_client(processes=False) as client:
        yield client


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped, so that `process_executor` can keep one event loop for the module."""
    return str(request.param)


class KeptProcessExecutor(ProcessExecutor):
    """A process executor that outlives the orchestrators using it (the fixture closes
    it), so that its started workers serve every test of the module, as they serve
    many executions of a long-lived orchestrator."""

    async def aclose(self) -> None:
        pass

    async def close_for_good(self) -> None:
        await super().aclose()


@pytest.fixture(scope="module")
async def process_executor(anyio_backend: str) -> AsyncIterator[ProcessExecutor]:
    """One process executor per backend for the module, on one event loop (worker
    processes belong to the loop that started them)."""
    executor = KeptProcessExecutor()
    yield executor
    await executor.close_for_good()


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def options(executor: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The orchestrator options that route every step to `executor`."""
    if executor == "default":
        return {}
    if executor == "dask":
        client = request.getfixturevalue("dask_client")
        return {"default_executor": "dask", "executors": {"dask": DaskExecutor(client=client)}}
    if executor == "process":
        kept = request.getfixturevalue("process_executor")
        return {"default_executor": "process", "executors": {"process": kept}}
    return {"default_executor": executor}


def sleeper(executor: str) -> str:
    """The sleeping method a timeout or cancel can stop on `executor` (the ``async``
    executor runs plain functions on the loop, where nothing can interrupt them)."""
    return "asleep" if executor == "async" else "sleep"


def work_step(step_id: str, method: str, **fields: Any) -> WorkflowStep:
    return step(step_id, method, plugin="work", **fields)


async def wait_for_file(path: Path) -> None:
    """Wait until a step (in another thread or process) has written `path`."""
    with anyio.fail_after(20):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110  # no event crosses processes
            await anyio.sleep(0.01)


# -- the contract ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_results_and_data_flow_do_not_depend_on_the_executor(
    options: dict[str, Any],
) -> None:
    """A chain of sync and async steps passes data step to step and reports the same
    results dictionary, whatever the executor."""
    chain = workflow(
        "chain",
        work_step("a", "inc"),
        work_step("b", "ainc", after=["a"]),
        work_step("c", "inc", after=["b"], params={"value": 10}),
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        results = await run(o, chain, {"value": 0})
    assert (results["status"], results["error"], results["data"]) == (
        "completed",
        None,
        {"value": 11},
    )
    assert {
        step_id: (each["status"], each["attempts"], each["result"], each["error"])
        for step_id, each in results["steps"].items()
    } == {
        "a": ("completed", 1, {"value": 1}, None),
        "b": ("completed", 1, {"value": 2}, None),
        "c": ("completed", 1, {"value": 11}, None),
    }


@pytest.mark.anyio
async def test_a_step_error_reads_the_same_on_every_executor(options: dict[str, Any]) -> None:
    """A method that raises fails its step with ``ExecutionFailed`` and the same message,
    naming the step, plugin, method and the exception; its dependents are skipped."""
    flow = workflow(
        "bad", work_step("bad", "boom", critical=False), work_step("after", "inc", after=["bad"])
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        results = await run(o, flow)
    bad = results["steps"]["bad"]
    assert (bad["status"], bad["error_code"], bad["attempts"]) == ("failed", "ExecutionFailed", 1)
    assert bad["error"] == "step 'bad': work.boom() raised ValueError: boom"
    assert statuses(results) == {"bad": "failed", "after": "skipped"}


@pytest.mark.anyio
async def test_a_failed_attempt_is_retried_with_its_error_type_intact(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """A step failing once with ``ConnectionError`` is retried (its ``retry_on`` sees the
    original exception type, even from another process) and completes on attempt 2,
    with the same events as everywhere else."""
    counter = tmp_path / "attempts"
    flaky = work_step(
        "flaky",
        "flaky",
        params={"counter": str(counter), "failures": 1},
        max_retries=2,
        retry_delay=1,
        retry_on=lambda error: isinstance(error, ConnectionError),
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        o.register_workflow(workflow("flaky", flaky)).value()
        stream = o.events()
        execution_id = (await o.execute_workflow("flaky")).value()
        results = (await o.get_workflow_results(execution_id)).value()
    with anyio.fail_after(5):
        received = [event async for event in stream]
    assert results["steps"]["flaky"]["attempts"] == 2
    assert results["data"] == {"attempts_seen": 2}
    assert [(event.kind, getattr(event, "attempt", None)) for event in received] == [
        ("workflow.started", None),
        ("step.started", 1),
        ("step.retrying", 1),
        ("step.started", 2),
        ("step.completed", 2),
        ("workflow.completed", None),
    ]
    retrying = received[2]
    assert isinstance(retrying, events.StepRetrying)
    assert retrying.error == "step 'flaky': work.flaky() raised ConnectionError: attempt 1 failed"


@pytest.mark.anyio
async def test_an_attempt_past_its_timeout_is_stopped_retried_and_failed(
    options: dict[str, Any], executor: str
) -> None:
    """An attempt that outlives its timeout is ended as ``Timeout`` at the deadline,
    retried, and the step fails once its attempts are spent, well before the sleeping
    calls would have returned."""
    slow = work_step(
        "slow",
        sleeper(executor),
        params={"seconds": 3.0},
        timeout=50,
        max_retries=1,
        retry_delay=0,
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        began = anyio.current_time()
        results = await run(o, workflow("slow", slow))
        took = anyio.current_time() - began
    assert took < 2.5  # two attempts that ran their course would take 6 s
    each = results["steps"]["slow"]
    assert (each["status"], each["error_code"], each["attempts"]) == ("failed", "Timeout", 2)
    assert each["error"] == "step 'slow' timed out after 50 ms (attempt 2)"
    assert results["status"] == "failed"


@pytest.mark.anyio
async def test_cancelling_a_running_step_reports_it_cancelled_promptly(
    options: dict[str, Any], executor: str, tmp_path: Path
) -> None:
    """While a step runs, the status shows it running; cancelling the execution then ends
    the step and the execution ``cancelled`` within a fraction of the step's duration,
    and its output never reaches the results."""
    marker = tmp_path / "started"
    flow = workflow(
        "cancel",
        work_step("slow", sleeper(executor), params={"seconds": 2.0, "marker": str(marker)}),
        work_step("next", "inc", after=["slow"]),
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        execution_id = await start(o, flow)
        await wait_for_file(marker)
        status = (await o.get_workflow_status(execution_id)).value()
        began = anyio.current_time()
        (await o.cancel_workflow(execution_id)).value()
        results = (await o.wait_workflow(execution_id)).value()
        took = anyio.current_time() - began
    assert (status["status"], status["running_steps"], status["current_step"]) == (
        "running",
        ["slow"],
        "slow",
    )
    assert status["steps"] == {"slow": "running", "next": "pending"}
    assert took < 1.0
    assert (results["status"], results["error_code"]) == ("cancelled", "OperationCancelled")
    assert statuses(results) == {"slow": "cancelled", "next": "cancelled"}
    assert results["steps"]["slow"]["result"] is None
    assert "slept" not in results["data"]


@pytest.mark.anyio
async def test_steps_see_the_same_context_on_every_executor(options: dict[str, Any]) -> None:
    """A method taking a `StepContext` sees its execution, workflow, step, attempt and
    inputs, wherever it runs."""
    flow = workflow("ctx", work_step("ctx", "context", params={"value": 1}))
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        results = await run(o, flow, {"extra": "x"})
    assert results["data"]["seen"] == {
        "execution_id": results["execution_id"],
        "workflow_id": "ctx",
        "step_id": "ctx",
        "attempt": 1,
        "inputs": {"extra": "x", "value": 1},
        "cancelled": False,
    }


@pytest.mark.anyio
async def test_parallel_steps_all_complete_on_every_executor(options: dict[str, Any]) -> None:
    """Eight independent steps in Parallel mode all complete with their own outputs."""
    steps = [work_step(f"s{i}", "inc", params={"value": i}) for i in range(8)]
    flow = workflow("fan", *steps, mode=ExecutionMode.Parallel)
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        results = await run(o, flow)
    assert {step_id: each["result"] for step_id, each in results["steps"].items()} == {
        f"s{i}": {"value": i + 1} for i in range(8)
    }


# -- where each executor runs a step -----------------------------------------------------

PLACES = {  # executor: where a sync method runs, where an async one runs
    "default": ("thread", "loop"),
    "async": ("loop", "loop"),
    "thread": ("thread", "thread"),
    "process": ("process", "process"),
    "dask": ("thread", "thread"),  # an in-process cluster: its worker threads
}


@pytest.mark.anyio
async def test_each_executor_runs_methods_where_it_says(
    options: dict[str, Any], executor: str
) -> None:
    """Sync and async methods run on the loop, in a worker thread or in another process,
    as the executor documents."""
    flow = workflow(
        "where",
        work_step("sync", "where"),
        work_step("async", "awhere"),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **options) as o:
        results = await run(o, flow)
    loop_thread = threading.get_ident()

    def place(seen: dict[str, int]) -> str:
        if seen["pid"] != os.getpid():
            return "process"
        return "loop" if seen["thread"] == loop_thread else "thread"

    steps = results["steps"]
    assert (place(steps["sync"]["result"]), place(steps["async"]["result"])) == PLACES[executor]


# -- choosing executors --------------------------------------------------------------------


class Recording(Executor):
    """An executor of our own: runs calls on the loop and remembers them."""

    def __init__(self) -> None:
        self.calls: list[StepCall] = []
        self.closed = 0

    async def run(self, call: StepCall) -> Any:
        self.calls.append(call)
        return await AsyncExecutor().run(call)

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.anyio
async def test_a_step_executor_wins_over_the_default_and_custom_ones_are_closed() -> None:
    """``step.executor`` picks the executor over ``default_executor``; a custom executor
    receives the call's details, and the orchestrator closes it when it closes."""
    mine = Recording()
    flow = workflow(
        "pick",
        work_step("mine", "inc", executor="mine", params={"value": 1}),
        work_step("default", "where", after=["mine"]),
    )
    async with AsyncPluginOrchestrator(
        manager_with(Work()), executors={"mine": mine}, default_executor="thread"
    ) as o:
        results = await run(o, flow)
        assert mine.closed == 0
    assert mine.closed == 1
    assert statuses(results) == {"mine": "completed", "default": "completed"}
    assert results["steps"]["default"]["result"]["thread"] != threading.get_ident()
    [call] = mine.calls
    assert (call.step_id, call.plugin_id, call.method_name, call.attempt) == (
        "mine",
        "work",
        "inc",
        1,
    )
    assert (call.workflow_id, call.execution_id) == ("pick", results["execution_id"])
    assert (call.args, call.kwargs, call.is_async, call.timeout) == ((), {"value": 1}, False, 60.0)
    assert call.where == "step 'mine': work.inc()"
    assert call.idempotency_key == f"{results['execution_id']}/mine"


@pytest.mark.anyio
async def test_a_step_naming_an_unknown_executor_fails_without_retrying() -> None:
    """A step naming an executor the orchestrator lacks fails with
    ``InvalidConfiguration``, naming it and the known ones, and is not retried."""
    flow = workflow("gpu", work_step("gpu", "inc", executor="gpu", max_retries=3))
    async with AsyncPluginOrchestrator(manager_with(Work())) as o:
        results = await run(o, flow)
    gpu = results["steps"]["gpu"]
    assert (gpu["status"], gpu["error_code"], gpu["attempts"]) == (
        "failed",
        "InvalidConfiguration",
        1,
    )
    assert gpu["error"] == (
        "step 'gpu': work.inc() names executor 'gpu', which this orchestrator does not have "
        "(it has: async, dask, process, thread)"
    )


@pytest.mark.anyio
async def test_a_user_thread_executor_has_its_own_thread_bound() -> None:
    """A `ThreadExecutor(max_threads=1)` given under a name runs its steps one at a time,
    even in Parallel mode with a larger ``thread_limit``."""
    flow = workflow(
        "one",
        *(work_step(f"s{i}", "sleep", params={"seconds": 0.03}) for i in range(3)),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(
        manager_with(Work()), executors={"one": ThreadExecutor(1)}, default_executor="one"
    ) as o:
        began = anyio.current_time()
        results = await run(o, flow)
        took = anyio.current_time() - began
    assert results["status"] == "completed"
    assert took >= 0.09


def test_executor_options_are_checked_when_the_orchestrator_is_made() -> None:
    """A default naming no executor, a non-executor value or a bad name is rejected at
    construction, naming the problem."""
    with pytest.raises(ValueError, match="default_executor 'gpu' names no executor"):
        AsyncPluginOrchestrator(manager_with(), default_executor="gpu")
    with pytest.raises(TypeError, match=r"executor 'x' must be a qtforge\.executors\.Executor"):
        AsyncPluginOrchestrator(manager_with(), executors={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="executor names must not be empty"):
        AsyncPluginOrchestrator(manager_with(), executors={"": AsyncExecutor()})
    with pytest.raises(ValueError, match="max_threads"):
        ThreadExecutor(0)
    with pytest.raises(ValueError, match="max_workers"):
        ProcessExecutor(0)
    assert AsyncPluginOrchestrator(manager_with(), default_executor="dask").default_executor == (
        "dask"
    )


def test_the_step_field_is_validated_snapshotted_and_given_back() -> None:
    """``WorkflowStep.executor`` takes a name or ``None``, rejects other values, and the
    registered snapshot keeps it (``get_workflow`` gives it back)."""
    each = WorkflowStep("a", "work", "inc", executor="process")
    assert each.executor == "process"
    with pytest.raises(TypeError, match="executor must be a str or None, not int"):
        each.executor = 3  # type: ignore[assignment]
    with pytest.raises(ValueError, match="executor must not be empty"):
        each.executor = ""
    o = AsyncPluginOrchestrator(manager_with(Work()))
    o.register_workflow(Workflow("w").add_step(each)).value()
    each.executor = None
    given_back = o.get_workflow("w").value().get_step("a")
    assert given_back is not None
    assert given_back.executor == "process"


# -- the process executor ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stopped_process_step_has_its_worker_killed_and_replaced(tmp_path: Path) -> None:
    """A process step that times out, or is cancelled, has its worker process killed (it
    no longer exists afterwards), and the next step runs in a fresh worker."""

    def where(workflow_id: str) -> Workflow:
        return workflow(workflow_id, work_step("where", "where"))

    async def stop(how: str) -> tuple[dict[str, Any], int]:
        marker = tmp_path / how
        slow = work_step("slow", "sleep", params={"seconds": 30, "marker": str(marker)})
        slow.timeout = 300 if how == "timeout" else None
        execution_id = await start(o, workflow(how, slow))
        await wait_for_file(marker)
        if how == "cancel":
            (await o.cancel_workflow(execution_id)).value()
        return (await o.wait_workflow(execution_id)).value(), int(marker.read_text())

    async with AsyncPluginOrchestrator(manager_with(Work()), default_executor="process") as o:
        # Start a worker first: the step's timeout then covers the step alone.
        first = (await run(o, where("first")))["data"]["pid"]
        timed_out, timed_out_pid = await stop("timeout")
        second = (await run(o, where("second")))["data"]["pid"]
        cancelled, cancelled_pid = await stop("cancel")
        third = (await run(o, where("third")))["data"]["pid"]
    assert (statuses(timed_out), statuses(cancelled)) == ({"slow": "failed"}, {"slow": "cancelled"})
    assert (timed_out_pid, cancelled_pid) == (first, second)  # warm workers ran them
    for pid in (timed_out_pid, cancelled_pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len({first, second, third, os.getpid()}) == 4


@pytest.mark.anyio
async def test_a_worker_process_that_dies_fails_its_attempt_which_is_retried(
    tmp_path: Path,
) -> None:
    """A step whose worker process dies fails that attempt with an error saying so and
    giving its exit status; the retry runs in a new worker and completes."""
    marker = tmp_path / "died"
    flaky = work_step(
        "die", "die_once", params={"marker": str(marker)}, max_retries=1, retry_delay=0
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), default_executor="process") as o:
        o.register_workflow(workflow("die", flaky)).value()
        stream = o.events()
        execution_id = (await o.execute_workflow("die")).value()
        results = (await o.get_workflow_results(execution_id)).value()
    with anyio.fail_after(5):
        retrying = [event async for event in stream if isinstance(event, events.StepRetrying)]
    assert (results["status"], results["steps"]["die"]["attempts"]) == ("completed", 2)
    assert results["data"]["pid"] != int(marker.read_text())
    [retry] = retrying
    assert retry.error_code == "ExecutionFailed"
    assert retry.error is not None
    assert retry.error == (
        "step 'die': work.die_once(): its worker process died before sending a result "
        "(exit status 3); a new one is started for the next call"
    )


def test_the_facade_runs_process_steps_and_leaves_no_worker_behind() -> None:
    """The blocking facade runs steps in worker processes from its background loop, and
    closing it stops them."""
    with PluginOrchestrator(manager_with(Work()), default_executor="process") as o:
        o.register_workflow(workflow("w", work_step("where", "where"))).value()
        execution_id = o.execute_workflow("w").value()
        results = o.get_workflow_results(execution_id).value()
    pid = results["data"]["pid"]
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.anyio
async def test_closing_the_orchestrator_stops_its_worker_processes() -> None:
    """Leaving ``async with`` stops the worker processes of its process executor."""
    async with AsyncPluginOrchestrator(manager_with(Work()), default_executor="process") as o:
        results = await run(o, workflow("w", work_step("where", "where")))
    with pytest.raises(ProcessLookupError):
        os.kill(results["data"]["pid"], 0)


# -- what cannot be pickled (process and Dask) ----------------------------------------------

REMOTE = ["process", "dask"]


@pytest.fixture(params=REMOTE)
def remote(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "dask":
        client = request.getfixturevalue("dask_client")
        return {"default_executor": "dask", "executors": {"dask": DaskExecutor(client=client)}}
    kept = request.getfixturevalue("process_executor")
    return {"default_executor": "process", "executors": {"process": kept}}


@pytest.mark.anyio
async def test_what_cannot_be_pickled_fails_the_step_naming_it(remote: dict[str, Any]) -> None:
    """An unpicklable plugin, argument or result fails the step at once, naming what
    could not be pickled, and is not retried."""
    name = remote["default_executor"]
    flow = workflow(
        "pickles",
        step("plugin", "inc", plugin="locked", max_retries=2),
        work_step("argument", "take", params={"thing": threading.Lock()}, max_retries=2),
        work_step("result", "lock", max_retries=2, retry_delay=0),
        mode=ExecutionMode.Parallel,
    )
    for each in flow.steps:
        each.critical = False  # let every step fail on its own
    async with AsyncPluginOrchestrator(manager_with(Work(), Locked()), **remote) as o:
        results = await run(o, flow)
    steps = results["steps"]
    assert {step_id: (each["error_code"], each["attempts"]) for step_id, each in steps.items()} == {
        "plugin": ("InvalidConfiguration", 1),
        "argument": ("InvalidParameters", 1),
        "result": ("ExecutionFailed", 1),
    }
    assert steps["plugin"]["error"].startswith(
        f"step 'plugin': locked.inc(): the {name} executor cannot send its plugin 'locked' "
        "(a plugins_for_executors.Locked) to its workers: it could not be pickled: TypeError:"
    )
    assert "cannot pickle '_thread.lock' object" in steps["plugin"]["error"]
    assert steps["argument"]["error"].startswith(
        f"step 'argument': work.take(): the {name} executor cannot send argument 'thing' "
        "(a _thread.lock) to its workers: it could not be pickled: TypeError:"
    )
    assert steps["result"]["error"].startswith(
        f"step 'result': work.lock() returned a lock, which the {name} executor cannot send "
        "back: it could not be pickled: TypeError:"
    )


# -- the envelope, without a worker ----------------------------------------------------------


def explode() -> None:
    raise RuntimeError("this cannot be unpickled")


class Bomb:
    """Pickles fine, fails to unpickle (and so does an exception holding one)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return explode, ()


class Raiser:
    plugin_id = "raiser"

    def value_error(self) -> None:
        raise ValueError("bad value")

    def unrebuildable(self) -> None:
        error = ValueError("cannot rebuild")
        error.part = Bomb()  # type: ignore[attr-defined]
        raise error

    def exit(self) -> None:
        raise SystemExit(3)


def shipped(method: str) -> Any:
    """Run ``Raiser().<method>()`` through the envelope, in this process, as a worker
    would, and unpack the outcome."""
    call = StepCall(
        fn=getattr(Raiser(), method),
        args=(),
        kwargs={},
        is_async=False,
        workflow_id="w",
        execution_id="e",
        step_id="s",
        plugin_id="raiser",
        method_name=method,
        attempt=1,
    )
    return unpack(run_shipped(pack(call, pickle.dumps, "process")), call, "process")


def test_a_worker_error_comes_back_as_itself_with_the_remote_traceback() -> None:
    """An exception raised in the worker is raised again in the engine, same type and
    message, its ``__cause__`` holding the worker's traceback."""
    with pytest.raises(ValueError, match="bad value") as caught:
        shipped("value_error")
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in value_error" in str(cause)
    assert 'raise ValueError("bad value")' in str(cause)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("unrebuildable", "step 's': raiser.unrebuildable() raised ValueError: cannot rebuild"),
        ("exit", "step 's': raiser.exit() raised SystemExit: 3"),
    ],
)
def test_worker_errors_that_cannot_come_back_are_reported_as_text(
    method: str, message: str
) -> None:
    """An exception the engine cannot rebuild, or a ``SystemExit`` (which must not stop
    the worker), fails the step with ``ExecutionFailed`` naming it, as it would read
    had the step run in the engine."""
    with pytest.raises(PluginError) as caught:
        shipped(method)
    assert (caught.value.code, caught.value.message) == (PluginErrorCode.ExecutionFailed, message)


@pytest.mark.anyio
async def test_the_store_records_the_same_whatever_the_executor(
    options: dict[str, Any], tmp_path: Path
) -> None:
    """With a SQLite store, what a fresh orchestrator reads back from the file (status,
    data, each step's result and attempts) is the same on every executor."""
    chain = workflow(
        "chain",
        work_step("a", "inc"),
        work_step("b", "ainc", after=["a"]),
        work_step("c", "inc", after=["b"], params={"value": 10}),
    )
    path = str(tmp_path / "runs.db")
    async with AsyncPluginOrchestrator(manager_with(Work()), store=path, **options) as o:
        live = await run(o, chain, {"value": 0})
    async with AsyncPluginOrchestrator(manager_with(Work()), store=path) as reader:
        stored = (await reader.get_workflow_results(live["execution_id"])).value()
    assert (stored["status"], stored["data"]) == ("completed", {"value": 11})
    assert {
        step_id: (each["status"], each["attempts"], each["result"])
        for step_id, each in stored["steps"].items()
    } == {
        "a": ("completed", 1, {"value": 1}),
        "b": ("completed", 1, {"value": 2}),
        "c": ("completed", 1, {"value": 11}),
    }
