"""The blocking facade `PluginOrchestrator` (SPEC 5 and 6): one engine on one background
thread, driven through anyio's blocking portal from any thread."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import BlockingPortal

import qtforge
from qtforge import PluginErrorCode, PluginManager
from qtforge.orchestration import (
    ExecutionMode,
    PluginOrchestrator,
    StepContext,
    Workflow,
    WorkflowStep,
)

WAIT = 10.0  # seconds: a generous bound for anything that should take milliseconds
FINISHED = ("completed", "failed", "cancelled")
ENGINE_THREAD_PREFIXES = ("qtforge", "asyncio-portal", "trio-portal")
# The keys SPEC 4 and 5 promise in status and results dictionaries.
STATUS_KEYS = {
    "execution_id", "workflow_id", "status", "progress", "current_step", "running_steps",
    "completed_steps", "failed_steps", "skipped_steps", "total_steps", "steps",
    "started_at", "finished_at", "error", "error_code",
}  # fmt: skip
RESULTS_KEYS = {
    "execution_id", "workflow_id", "status", "data", "error", "error_code", "started_at",
    "finished_at", "duration_ms", "steps",
}  # fmt: skip
STEP_RESULT_KEYS = {
    "status", "result", "error", "error_code", "attempts", "started_at", "finished_at",
    "duration_ms",
}  # fmt: skip


class Steps:
    """The plugin every facade test uses; sync methods run in worker threads."""

    plugin_id = "steps"

    def __init__(self) -> None:
        self.started = threading.Event()  # set when a gated or long step begins
        self.gate = threading.Event()  # lets a gated step finish
        self.cancelled = threading.Event()  # set when a long async step is cancelled
        self.orchestrator: PluginOrchestrator | None = None  # for the re-entrant steps
        self.seen: dict[str, Any] = {}

    def double(self, n: int) -> dict[str, int]:
        return {"n": 2 * n}

    async def add_one(self, n: int) -> dict[str, int]:
        return {"n": n + 1}

    def add(self, n: int, k: int) -> dict[str, int]:
        return {"n": n + k}

    def wait_gate(self) -> dict[str, bool]:
        self.started.set()
        if not self.gate.wait(WAIT):
            raise TimeoutError("the test never opened the gate")
        return {"gated": True}

    async def sleep_long(self) -> None:
        self.started.set()
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise

    def boom(self) -> None:
        raise ValueError("boom")

    async def reenter(self, context: StepContext) -> None:
        assert self.orchestrator is not None
        try:
            self.orchestrator.get_workflow_status(context.execution_id)
        except Exception as error:
            self.seen["reentry"] = error
            raise

    async def close_facade(self) -> None:
        assert self.orchestrator is not None
        try:
            self.orchestrator.close()
        except Exception as error:
            self.seen["reentry"] = error
            raise

    def query_own_status(self, context: StepContext) -> None:
        assert self.orchestrator is not None
        self.seen["status"] = self.orchestrator.get_workflow_status(context.execution_id).value()


def single(workflow_id: str, method: str) -> Workflow:
    """A one-step workflow calling `method` of the `Steps` plugin."""
    return Workflow(workflow_id).add_step(WorkflowStep("only", "steps", method))


def chain(workflow_id: str, second: WorkflowStep) -> Workflow:
    """``double`` followed by `second`, which depends on it."""
    second.dependencies = ["double"]
    return (
        Workflow(workflow_id)
        .set_execution_mode(ExecutionMode.Sequential)
        .add_step(WorkflowStep("double", "steps", "double"))
        .add_step(second)
    )


STANDARD_WORKFLOWS = (
    chain("chain", WorkflowStep("add_one", "steps", "add_one")),
    single("gated", "wait_gate"),
    single("long", "sleep_long"),
    single("failing", "boom"),
    single("reenter", "reenter"),
    single("query", "query_own_status"),
)


def engine_threads(before: frozenset[threading.Thread]) -> list[str]:
    """Names of live threads of a facade's engine (named by qtforge or anyio's portal),
    ignoring those in `before` (left by earlier tests)."""
    return [
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith(ENGINE_THREAD_PREFIXES) and thread not in before
    ]


def live_threads() -> frozenset[threading.Thread]:
    return frozenset(threading.enumerate())


def status_of(orchestrator: PluginOrchestrator, execution_id: str) -> dict[str, Any]:
    return orchestrator.get_workflow_status(execution_id).value()


def poll_until_finished(orchestrator: PluginOrchestrator, execution_id: str) -> dict[str, Any]:
    """Poll the status the way the seed's monitoring loop does; returns the final one."""
    deadline = time.monotonic() + WAIT
    while (status := status_of(orchestrator, execution_id))["status"] not in FINISHED:
        assert time.monotonic() < deadline, f"execution still {status['status']}"
        time.sleep(0.001)
    return status


def error_code(result: qtforge.Expected[Any, qtforge.PluginError]) -> PluginErrorCode:
    assert not result, f"expected an error, got {result!r}"
    return result.error().code


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def plugin() -> Steps:
    return Steps()


@pytest.fixture
def orchestrator(backend: str, plugin: Steps) -> Iterator[PluginOrchestrator]:
    """A facade with the `Steps` plugin and `STANDARD_WORKFLOWS`, closed afterwards."""
    before = live_threads()
    manager = PluginManager()
    manager.register_plugin(plugin)
    with PluginOrchestrator(manager, backend=backend) as orchestrator:
        plugin.orchestrator = orchestrator
        for workflow in STANDARD_WORKFLOWS:
            orchestrator.register_workflow(workflow).value()
        yield orchestrator
        plugin.gate.set()  # never leave a gated step waiting on a failed test
    assert engine_threads(before) == []


# -- construction ----------------------------------------------------------------------


def test_constructor_and_both_factories_make_facades_over_the_given_manager() -> None:
    """The seed's three ways to build an orchestrator all give a `PluginOrchestrator`
    exposing the plugin manager it was given (or a fresh one)."""
    before = live_threads()
    manager = PluginManager()
    built = [
        PluginOrchestrator(manager),
        qtforge.orchestration.create_orchestrator(manager),
        qtforge.create_orchestrator(manager),
    ]
    for orchestrator in built:
        assert isinstance(orchestrator, PluginOrchestrator)
        assert orchestrator.plugin_manager is manager
    fresh = qtforge.create_orchestrator()
    assert isinstance(fresh.plugin_manager, PluginManager)
    assert fresh.plugin_manager is not manager
    assert engine_threads(before) == [], "constructing a facade must not start its engine"


# -- executing -------------------------------------------------------------------------


def test_blocking_execute_returns_once_finished_with_final_status_and_results(
    orchestrator: PluginOrchestrator,
) -> None:
    """A blocking execute returns after the execution ended: its status and results are
    final at once, with every key SPEC 4 and 5 promise."""
    execution_id = orchestrator.execute_workflow("chain", {"n": 20}).value()
    status = status_of(orchestrator, execution_id)
    assert status.keys() >= STATUS_KEYS
    assert status["status"] == "completed"
    assert status["progress"] == 100.0
    assert status["current_step"] is None
    assert status["finished_at"] is not None
    assert status["steps"] == {"double": "completed", "add_one": "completed"}
    results = orchestrator.get_workflow_results(execution_id).value()
    assert results.keys() >= RESULTS_KEYS
    assert all(step.keys() >= STEP_RESULT_KEYS for step in results["steps"].values())
    assert results["status"] == "completed"
    assert results["data"] == {"n": 41}
    assert orchestrator.list_executions() == [execution_id]


def test_async_execute_returns_at_once_and_polling_sees_it_finish(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """``async_execution=True`` returns while the step still runs; results are
    ``InvalidState`` until the execution finishes, and `wait_workflow` returns them."""
    execution_id = orchestrator.execute_workflow("gated", async_execution=True).value()
    assert plugin.started.wait(WAIT)
    status = status_of(orchestrator, execution_id)
    assert status["status"] == "running"
    assert status["current_step"] == "only"
    early = orchestrator.get_workflow_results(execution_id)
    assert error_code(early) is PluginErrorCode.InvalidState
    assert execution_id in early.error().message

    plugin.gate.set()
    assert poll_until_finished(orchestrator, execution_id)["status"] == "completed"
    results = orchestrator.wait_workflow(execution_id).value()
    assert results["data"] == {"gated": True}
    assert results == orchestrator.get_workflow_results(execution_id).value()


@pytest.mark.parametrize("async_execution", [False, True], ids=["blocking", "async"])
def test_a_failed_workflow_still_returns_its_execution_id(
    orchestrator: PluginOrchestrator, async_execution: bool
) -> None:
    """Execution of a failing workflow succeeds with an id; the failure is read from
    status and results."""
    started = orchestrator.execute_workflow("failing", async_execution=async_execution)
    execution_id = started.value()
    results = orchestrator.wait_workflow(execution_id).value()
    status = status_of(orchestrator, execution_id)
    assert status["status"] == results["status"] == "failed"
    assert status["error_code"] == results["error_code"] == "ExecutionFailed"
    assert "boom" in results["steps"]["only"]["error"]


def test_cancel_from_another_thread_ends_a_blocking_execute(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """`cancel_workflow` called from a second thread stops an execution that a blocking
    `execute_workflow` waits on; the blocked call returns its id promptly."""

    def cancel_when_started() -> qtforge.Expected[None, qtforge.PluginError]:
        assert plugin.started.wait(WAIT)
        (execution_id,) = orchestrator.list_executions()
        return orchestrator.cancel_workflow(execution_id)

    with ThreadPoolExecutor(1) as pool:
        cancelled = pool.submit(cancel_when_started)
        began = time.monotonic()
        execution_id = orchestrator.execute_workflow("long").value()
        elapsed = time.monotonic() - began
        assert cancelled.result(WAIT)
    assert elapsed < WAIT
    assert plugin.cancelled.is_set()
    status = status_of(orchestrator, execution_id)
    assert status["status"] == "cancelled"
    assert status["error_code"] == "OperationCancelled"
    assert status["steps"] == {"only": "cancelled"}
    again = orchestrator.cancel_workflow(execution_id)
    assert error_code(again) is PluginErrorCode.InvalidState


def test_ctrl_c_while_the_call_is_handed_over_still_cancels_the_execution(
    orchestrator: PluginOrchestrator, plugin: Steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands while a blocking execute is still handing its call to the engine
    thread (the engine already runs the step) cancels the execution, and by the time
    `KeyboardInterrupt` reaches the caller the execution has ended ``cancelled``.

    The window is real: the engine thread may start the step before the caller's thread
    returns from `BlockingPortal.start_task_soon`, and a subprocess test used to hit it.
    """
    warm_up = orchestrator.execute_workflow("chain", {"n": 1}).value()  # starts the engine
    original = BlockingPortal.start_task_soon
    interrupted = threading.Event()

    def interrupted_after_spawning(portal: BlockingPortal, *args: Any, **kwargs: Any) -> Any:
        future = original(portal, *args, **kwargs)
        if not interrupted.is_set() and plugin.started.wait(WAIT):
            interrupted.set()  # once: the first spawn is the execute's, which starts the step
            raise KeyboardInterrupt
        return future

    monkeypatch.setattr(BlockingPortal, "start_task_soon", interrupted_after_spawning)
    with pytest.raises(KeyboardInterrupt):
        orchestrator.execute_workflow("long")
    (execution_id,) = set(orchestrator.list_executions()) - {warm_up}
    status = status_of(orchestrator, execution_id)
    assert (status["status"], status["steps"]) == ("cancelled", {"only": "cancelled"})
    assert plugin.cancelled.is_set()


# -- queries -------------------------------------------------------------------------


QUERIES = ("get_workflow_status", "get_workflow_results", "cancel_workflow", "wait_workflow")


@pytest.mark.parametrize("query", QUERIES)
def test_unknown_execution_is_not_found_without_starting_the_engine(query: str) -> None:
    """Asking about an unknown execution answers ``NotFound`` naming the id, and does
    not start the engine thread (there can be no executions without it)."""
    before = live_threads()
    orchestrator = PluginOrchestrator(PluginManager())
    result = getattr(orchestrator, query)("no-such-execution")
    assert error_code(result) is PluginErrorCode.NotFound
    assert "no-such-execution" in result.error().message
    assert orchestrator.list_executions() == []
    assert engine_threads(before) == []
    orchestrator.close()


@pytest.mark.parametrize("query", QUERIES)
def test_unknown_execution_is_not_found_on_a_running_engine(
    orchestrator: PluginOrchestrator, query: str
) -> None:
    """Once the engine runs, an unknown execution id is still ``NotFound``."""
    orchestrator.execute_workflow("chain", {"n": 1}).value()
    result = getattr(orchestrator, query)("no-such-execution")
    assert error_code(result) is PluginErrorCode.NotFound


def test_executing_an_unknown_workflow_is_not_found(orchestrator: PluginOrchestrator) -> None:
    """`execute_workflow` of an unregistered id answers ``NotFound`` naming it."""
    result = orchestrator.execute_workflow("no-such-workflow")
    assert error_code(result) is PluginErrorCode.NotFound
    assert "no-such-workflow" in result.error().message


WRONG_TYPES: dict[str, Callable[[PluginOrchestrator], object]] = {
    "workflow_id": lambda o: o.execute_workflow(1),  # type: ignore[arg-type]
    "initial_data": lambda o: o.execute_workflow("chain", [("n", 1)]),  # type: ignore[arg-type]
    "async_execution": lambda o: o.execute_workflow("chain", {"n": 1}, "yes"),  # type: ignore[arg-type]
    "status": lambda o: o.get_workflow_status(1),  # type: ignore[arg-type]
    "results": lambda o: o.get_workflow_results(None),  # type: ignore[arg-type]
    "cancel": lambda o: o.cancel_workflow(1),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("call", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_argument_types_raise_type_error_through_the_portal(
    orchestrator: PluginOrchestrator, call: Callable[[PluginOrchestrator], object]
) -> None:
    """An argument of the wrong type is a bug in the caller: it raises `TypeError`
    (unwrapped, from the engine thread) rather than returning an error `Expected`."""
    orchestrator.execute_workflow("chain", {"n": 1}).value()  # the engine thread runs
    with pytest.raises(TypeError):
        call(orchestrator)


def test_status_round_trip_is_fast(orchestrator: PluginOrchestrator) -> None:
    """One `get_workflow_status` is one portal round trip: well under 50 ms (median)."""
    execution_id = orchestrator.execute_workflow("chain", {"n": 1}).value()
    durations = []
    for _ in range(200):
        began = time.perf_counter()
        status_of(orchestrator, execution_id)
        durations.append(time.perf_counter() - began)
    assert statistics.median(durations) < 0.05


# -- many callers ----------------------------------------------------------------------


def drive_from_thread(orchestrator: PluginOrchestrator, worker: int) -> dict[str, Any]:
    """What one of many threads does: register its own workflow (even workers) or use the
    shared chain, execute it (async for every other pair), poll, and read the results."""
    if worker % 2 == 0:
        workflow_id = f"own-{worker}"
        orchestrator.register_workflow(
            chain(workflow_id, WorkflowStep("add", "steps", "add", parameters={"k": worker}))
        ).value()
    else:
        workflow_id = "chain"
    async_execution = worker % 4 < 2
    execution_id = orchestrator.execute_workflow(
        workflow_id, {"n": worker}, async_execution=async_execution
    ).value()
    assert poll_until_finished(orchestrator, execution_id)["status"] == "completed"
    return orchestrator.get_workflow_results(execution_id).value()


def test_thirty_two_threads_share_one_facade(orchestrator: PluginOrchestrator) -> None:
    """32 threads registering, executing and polling at once each get their own
    execution with the right results."""
    workers = 32
    barrier = threading.Barrier(workers)

    def worker(index: int) -> dict[str, Any]:
        barrier.wait(WAIT)
        return drive_from_thread(orchestrator, index)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(worker, range(workers)))
    for index, result in enumerate(results):
        expected = 3 * index if index % 2 == 0 else 2 * index + 1
        assert result["data"] == {"n": expected}, index
    assert len({result["execution_id"] for result in results}) == workers
    assert len(orchestrator.list_executions()) == workers


# -- other event loops -----------------------------------------------------------------


async def monitor(
    orchestrator: PluginOrchestrator, execution_id: str, gate: threading.Event
) -> list[str]:
    """The seed's asyncio monitoring loop: poll the status from a coroutine, opening the
    gate once the step was seen running."""
    seen: list[str] = []
    while True:
        status_result = orchestrator.get_workflow_status(execution_id)
        status = status_result.value()
        seen.append(status["status"])
        if status["status"] in FINISHED:
            return seen
        if status["current_step"] == "only":
            gate.set()
        await asyncio.sleep(0.001)


def test_facade_works_from_a_thread_running_its_own_asyncio_loop(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """The facade can be called from a coroutine under ``asyncio.run``, as the seed's
    monitoring example does."""

    async def main() -> list[str]:
        started = orchestrator.execute_workflow("gated", async_execution=True)
        return await monitor(orchestrator, started.value(), plugin.gate)

    seen = asyncio.run(main())
    assert seen[0] == "running"
    assert seen[-1] == "completed"


@pytest.mark.asyncio
async def test_facade_works_inside_a_pytest_asyncio_test(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """A facade (on either backend) can be driven from an asyncio test's loop, with
    pytest-asyncio and anyio's pytest plugin installed side by side."""
    execution_id = orchestrator.execute_workflow("gated", async_execution=True).value()
    seen = await monitor(orchestrator, execution_id, plugin.gate)
    assert seen[-1] == "completed"
    assert orchestrator.execute_workflow("chain", {"n": 4}).value()


def test_facade_call_from_the_engine_loop_fails_the_step_instead_of_deadlocking(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """An async plugin method that calls the facade (on the engine's own loop) gets a
    `RuntimeError` pointing to `AsyncPluginOrchestrator`, which fails the step."""
    execution_id = orchestrator.execute_workflow("reenter").value()
    assert isinstance(plugin.seen["reentry"], RuntimeError)
    step = orchestrator.get_workflow_results(execution_id).value()["steps"]["only"]
    assert step["status"] == "failed"
    assert "AsyncPluginOrchestrator" in step["error"]


def test_close_from_the_engine_loop_is_refused_and_changes_nothing(
    backend: str, plugin: Steps
) -> None:
    """`close` called from an async plugin method raises `RuntimeError` and leaves the
    facade open: the results can still be read, and a later `close` stops the thread."""
    before = live_threads()
    manager = PluginManager()
    manager.register_plugin(plugin)
    orchestrator = PluginOrchestrator(manager, backend=backend)
    plugin.orchestrator = orchestrator
    orchestrator.register_workflow(single("closer", "close_facade")).value()
    execution_id = orchestrator.execute_workflow("closer").value()
    assert isinstance(plugin.seen["reentry"], RuntimeError)
    results = orchestrator.get_workflow_results(execution_id)
    orchestrator.close()
    assert engine_threads(before) == []
    assert results.value()["steps"]["only"]["status"] == "failed"


def test_sync_plugin_method_may_query_the_facade(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """A sync plugin method runs in a worker thread, so it may call the facade: it sees
    its own execution running."""
    execution_id = orchestrator.execute_workflow("query").value()
    assert status_of(orchestrator, execution_id)["status"] == "completed"
    assert plugin.seen["status"]["status"] == "running"
    assert plugin.seen["status"]["running_steps"] == ["only"]


# -- closing ---------------------------------------------------------------------------


def test_close_is_idempotent_and_leaves_no_thread(backend: str) -> None:
    """`close` stops the engine thread, can be called again, and later executions
    answer ``InvalidState`` without restarting the engine."""
    before = live_threads()
    manager = PluginManager()
    manager.register_plugin(Steps())
    orchestrator = PluginOrchestrator(manager, backend=backend)
    orchestrator.register_workflow(STANDARD_WORKFLOWS[0]).value()
    execution_id = orchestrator.execute_workflow("chain", {"n": 1}).value()
    assert engine_threads(before) == ["qtforge"]
    orchestrator.close()
    orchestrator.close()
    assert engine_threads(before) == []
    # trio keeps idle worker threads in a process-wide cache for a while; anyio's asyncio
    # workers were told to stop when the loop ended and may take a moment to go
    leftover = [t for t in live_threads() - before if not t.name.startswith("Trio thread")]
    for thread in leftover:
        thread.join(WAIT)
    assert [thread.name for thread in leftover if thread.is_alive()] == []
    after = orchestrator.execute_workflow("chain", {"n": 1})
    assert error_code(after) is PluginErrorCode.InvalidState
    assert "closed" in after.error().message
    assert error_code(orchestrator.get_workflow_status(execution_id)) is (
        PluginErrorCode.InvalidState
    )
    assert engine_threads(before) == []
    assert orchestrator.has_workflow("chain"), "the registry outlives the engine"


def test_with_block_closes_the_facade(backend: str) -> None:
    """Leaving ``with PluginOrchestrator(...)`` closes it."""
    before = live_threads()
    manager = PluginManager()
    manager.register_plugin(Steps())
    with PluginOrchestrator(manager, backend=backend) as orchestrator:
        orchestrator.register_workflow(STANDARD_WORKFLOWS[0]).value()
        assert orchestrator.execute_workflow("chain", {"n": 1})
    assert engine_threads(before) == []
    assert error_code(orchestrator.execute_workflow("chain")) is PluginErrorCode.InvalidState


def test_closing_a_never_started_facade_keeps_it_closed() -> None:
    """A facade closed before any execution never starts its engine afterwards."""
    before = live_threads()
    orchestrator = PluginOrchestrator(PluginManager())
    orchestrator.close()
    assert error_code(orchestrator.execute_workflow("anything")) is PluginErrorCode.InvalidState
    assert engine_threads(before) == []


def test_close_cancels_running_executions(orchestrator: PluginOrchestrator, plugin: Steps) -> None:
    """`close` cancels an async execution still running and returns promptly."""
    orchestrator.execute_workflow("long", async_execution=True).value()
    assert plugin.started.wait(WAIT)
    began = time.monotonic()
    orchestrator.close()
    assert time.monotonic() - began < WAIT
    assert plugin.cancelled.is_set()


def test_a_call_racing_close_answers_invalid_state(
    orchestrator: PluginOrchestrator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status query that reaches the engine thread just after another thread closed
    the facade answers ``InvalidState``, as any call after `close` does, instead of
    raising the portal's `RuntimeError`.

    The query is held back at the moment it hands its call to the portal, which is
    where a thread descheduled mid-call would be; a stress run hits it on its own.
    """
    execution_id = orchestrator.execute_workflow("chain", {"n": 1}).value()
    original = BlockingPortal.start_task_soon
    racer: dict[str, int] = {}
    arrived, closed = threading.Event(), threading.Event()

    def held_back(portal: BlockingPortal, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() == racer.get("thread"):
            arrived.set()
            assert closed.wait(WAIT)
        return original(portal, *args, **kwargs)

    def query() -> qtforge.Expected[dict[str, Any], qtforge.PluginError]:
        racer["thread"] = threading.get_ident()
        return orchestrator.get_workflow_status(execution_id)

    monkeypatch.setattr(BlockingPortal, "start_task_soon", held_back)
    with ThreadPoolExecutor(1) as pool:
        raced = pool.submit(query)
        assert arrived.wait(WAIT)
        orchestrator.close()
        closed.set()
        assert error_code(raced.result(WAIT)) is PluginErrorCode.InvalidState


def test_close_from_another_thread_unblocks_a_blocking_execute(
    orchestrator: PluginOrchestrator, plugin: Steps
) -> None:
    """Closing the facade while another thread is blocked in `execute_workflow` cancels
    that execution and lets the blocked call return its id."""
    with ThreadPoolExecutor(1) as pool:
        blocked = pool.submit(orchestrator.execute_workflow, "long")
        assert plugin.started.wait(WAIT)
        orchestrator.close()
        assert blocked.result(WAIT)
    assert plugin.cancelled.is_set()


class Hooked:
    """A plugin recording its work and lifecycle hooks in a shared log."""

    def __init__(self, plugin_id: str, log: list[str]) -> None:
        self.plugin_id = plugin_id
        self.log = log

    def record(self, what: str) -> None:
        self.log.append(f"{self.plugin_id}.{what}")

    def work(self) -> None:
        self.record("work")


class SyncHooks(Hooked):
    def initialize(self) -> None:
        self.record("initialize")

    def shutdown(self) -> None:
        self.record("shutdown")


class AsyncHooks(Hooked):
    async def initialize(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.record("initialize")

    async def shutdown(self) -> None:
        await anyio.lowlevel.checkpoint()
        self.record("shutdown")


def test_close_runs_the_shutdown_hooks_of_used_plugins(backend: str) -> None:
    """Plugins initialized by executions (sync or async hooks) are shut down once, on
    close; a plugin never used is neither initialized nor shut down."""
    log: list[str] = []
    manager = PluginManager()
    for plugin in (SyncHooks("sync", log), AsyncHooks("async", log), SyncHooks("unused", log)):
        manager.register_plugin(plugin)
    workflow = (
        Workflow("hooks")
        .add_step(WorkflowStep("first", "sync", "work"))
        .add_step(WorkflowStep("second", "async", "work", dependencies=["first"]))
    )
    with PluginOrchestrator(manager, backend=backend) as orchestrator:
        orchestrator.register_workflow(workflow).value()
        for _ in range(2):
            orchestrator.execute_workflow("hooks").value()
        assert not [entry for entry in log if entry.endswith(".shutdown")]
    assert log[:3] == ["sync.initialize", "sync.work", "async.initialize"]
    assert log.count("sync.initialize") == log.count("async.initialize") == 1
    assert sorted(entry for entry in log if entry.endswith(".shutdown")) == [
        "async.shutdown",
        "sync.shutdown",
    ]
    assert not [entry for entry in log if entry.startswith("unused")]
