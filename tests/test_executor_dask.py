"""What the Dask executor adds to the executor contract (tests/test_executors.py runs
that contract on Dask too): honest cancellation, the cluster's lifecycle, and the
failures a real cluster brings (workers that cannot import a plugin, workers lost)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import dask
import pytest
from plugins_for_executors import Work, local_dask_client
from plugins_for_tests import manager_with, run, start, statuses, step, workflow

from qtforge.executors import DaskExecutor
from qtforge.orchestration import AsyncPluginOrchestrator, PluginOrchestrator, events


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """An in-process cluster (its workers are threads of this process)."""
    with local_dask_client(processes=False) as client:
        yield client


@pytest.fixture(scope="module")
def dask_processes() -> Iterator[Any]:
    """A cluster of two worker processes, whose scheduler gives up on a task as soon
    as one worker running it dies (instead of trying it on three more)."""
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        local_dask_client(processes=True, n_workers=2, threads_per_worker=1) as client,
    ):
        yield client


def on_dask(client: Any) -> dict[str, Any]:
    return {"default_executor": "dask", "executors": {"dask": DaskExecutor(client=client)}}


async def wait_for_file(path: Path) -> None:
    """Wait until a step (in another thread or process) has written `path`."""
    with anyio.fail_after(20):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110  # no event crosses processes
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_cancelled_step_is_reported_cancelled_though_its_task_runs_on(
    dask_client: Any, tmp_path: Path
) -> None:
    """Cancelling a running Dask step reports it ``cancelled`` at once, with no result,
    and the scheduler is told that nobody wants its task any more, but (as documented)
    Dask does not interrupt the task: it keeps running on its worker."""
    marker = tmp_path / "slow"
    slow = step("slow", "sleep", plugin="work", params={"seconds": 0.6, "marker": str(marker)})
    async with AsyncPluginOrchestrator(manager_with(Work()), **on_dask(dask_client)) as o:
        execution_id = await start(o, workflow("cancel", slow))
        await wait_for_file(marker)
        (await o.cancel_workflow(execution_id)).value()
        results = (await o.wait_workflow(execution_id)).value()
    ran_to_its_end = await anyio.Path(f"{marker}.done").exists()

    assert (results["status"], statuses(results)) == ("cancelled", {"slow": "cancelled"})
    assert results["steps"]["slow"]["result"] is None
    assert results["data"] == {}

    def wanted(dask_scheduler: Any) -> list[str]:
        return [str(key) for key, task in dask_scheduler.tasks.items() if task.who_wants]

    async def still_wanted() -> bool:
        return bool(await anyio.to_thread.run_sync(dask_client.run_on_scheduler, wanted))

    with anyio.fail_after(5):  # the cancel travels to the scheduler in the background
        while await still_wanted():  # noqa: ASYNC110  # the scheduler has no event to wait on
            await anyio.sleep(0.02)
    assert not ran_to_its_end
    await wait_for_file(Path(f"{marker}.done"))  # yet the task ran to its end


@pytest.mark.anyio
async def test_without_a_client_it_starts_a_local_cluster_and_stops_it() -> None:
    """A `DaskExecutor` given no address or client starts a `LocalCluster` with the
    given options on first use, and closes client and cluster with the orchestrator."""
    executor = DaskExecutor(cluster_options={"processes": False, "n_workers": 1})
    assert executor.client is None
    async with AsyncPluginOrchestrator(
        manager_with(Work()), executors={"dask": executor}, default_executor="dask"
    ) as o:
        results = await run(o, workflow("w", step("a", "inc", plugin="work")), {"value": 1})
        client = executor.client
        assert client is not None
        assert client.status == "running"
    assert results["data"] == {"value": 2}
    assert executor.client is None
    assert client.status == "closed"


@pytest.mark.anyio
async def test_a_client_it_was_given_is_left_open(dask_client: Any) -> None:
    """An executor made with ``client=`` uses that client and does not close it."""
    executor = DaskExecutor(client=dask_client)
    async with AsyncPluginOrchestrator(
        manager_with(Work()), executors={"dask": executor}, default_executor="dask"
    ) as o:
        await executor.start()
        results = await run(o, workflow("w", step("a", "inc", plugin="work")))
    assert results["status"] == "completed"
    assert executor.client is dask_client
    assert dask_client.status == "running"


def test_the_facade_runs_dask_steps(dask_client: Any) -> None:
    """The blocking facade runs steps on Dask from its background event loop."""
    with PluginOrchestrator(manager_with(Work()), **on_dask(dask_client)) as o:
        o.register_workflow(workflow("w", step("a", "inc", plugin="work"))).value()
        results = o.get_workflow_results(o.execute_workflow("w").value()).value()
    assert results["data"] == {"value": 1}


@pytest.mark.anyio
async def test_without_distributed_a_dask_step_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the ``distributed`` package, a Dask step fails at once (no retry) with
    ``InvalidConfiguration`` naming the extra to install."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes importing it fail
    flow = workflow("w", step("a", "inc", plugin="work", executor="dask", max_retries=2))
    async with AsyncPluginOrchestrator(manager_with(Work())) as o:
        results = await run(o, flow)
    a = results["steps"]["a"]
    assert (a["error_code"], a["attempts"]) == ("InvalidConfiguration", 1)
    assert a["error"] == (
        "the 'dask' executor needs the distributed package: pip install 'qtforge[dask]'"
    )


def test_the_options_are_checked() -> None:
    """An address and a client together, or cluster options for a cluster it will not
    start, are rejected."""
    with pytest.raises(ValueError, match="an address or a client, not both"):
        DaskExecutor("tcp://localhost:8786", client=object())
    with pytest.raises(ValueError, match="cluster_options apply only"):
        DaskExecutor("tcp://localhost:8786", cluster_options={"n_workers": 1})


def test_importing_the_executors_does_not_import_dask() -> None:
    """``import qtforge.executors`` and an orchestrator with a process default leave
    Dask unimported (it costs a third of a second)."""
    script = textwrap.dedent(
        """
        import sys
        import qtforge.executors
        from qtforge.orchestration import AsyncPluginOrchestrator
        AsyncPluginOrchestrator(default_executor="process")
        heavy = ("dask", "distributed", "cloudpickle")
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert run.stdout.strip() == "[]"


# -- a cluster of worker processes -----------------------------------------------------------


def ghost_plugin(monkeypatch: pytest.MonkeyPatch) -> object:
    """A plugin whose module exists only in this process: workers cannot import it."""
    module = types.ModuleType("qtforge_test_ghost")
    exec(  # a class defined in a module no worker can import
        "class Ghost:\n    plugin_id = 'ghost'\n    def hello(self):\n        return {'hi': 1}\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    plugin: object = module.Ghost()
    return plugin


@pytest.mark.anyio
async def test_a_plugin_the_workers_cannot_import_fails_its_step_quickly(
    dask_processes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step whose plugin module the workers cannot import fails with an error naming
    the missing module (instead of a Dask task that never resolves), and the cluster
    still runs the next step."""
    flow = workflow(
        "ghost",
        step("ghost", "hello", plugin="ghost", critical=False, timeout=20_000),
        step("next", "inc", plugin="work", timeout=20_000),
    )
    manager = manager_with(Work(), ghost_plugin(monkeypatch))
    async with AsyncPluginOrchestrator(manager, **on_dask(dask_processes)) as o:
        with anyio.fail_after(15):
            results = await run(o, flow)
    ghost = results["steps"]["ghost"]
    assert (ghost["status"], ghost["error_code"]) == ("failed", "ExecutionFailed")
    assert ghost["error"] == (
        "step 'ghost': ghost.hello(): a dask worker could not load the step's plugin or "
        "arguments: ModuleNotFoundError: No module named 'qtforge_test_ghost' (every module "
        "they come from must be importable by the workers)"
    )
    assert results["steps"]["next"]["status"] == "completed"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_lost_worker_fails_the_attempt_and_the_retry_completes(
    dask_processes: Any, tmp_path: Path
) -> None:
    """A step whose Dask worker process dies under it fails that attempt (the scheduler
    reports the worker lost) instead of hanging, and its retry completes elsewhere."""
    marker = tmp_path / "died"
    dies = step(
        "dies",
        "die_once",
        plugin="work",
        params={"marker": str(marker)},
        max_retries=1,
        retry_delay=0,
        timeout=20_000,
    )
    async with AsyncPluginOrchestrator(manager_with(Work()), **on_dask(dask_processes)) as o:
        o.register_workflow(workflow("dies", dies)).value()
        stream = o.events()
        with anyio.fail_after(20):
            results = (await o.run_workflow("dies")).value()
    with anyio.fail_after(5):
        retrying = [event async for event in stream if isinstance(event, events.StepRetrying)]
    assert (results["status"], results["steps"]["dies"]["attempts"]) == ("completed", 2)
    assert results["data"]["pid"] != int(marker.read_text())
    [retry] = retrying
    assert retry.error is not None
    assert retry.error.startswith(
        "step 'dies': work.die_once(): its Dask task failed (KilledWorker"
    )
