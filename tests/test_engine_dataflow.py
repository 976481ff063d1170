"""Data flow between steps, and the results and status dictionaries (SPEC 4 and 5)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from plugins_for_tests import Probe, manager_with, run, start, statuses, step, workflow

from qtforge import PluginErrorCode
from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode, StepContext, Workflow
from qtforge.orchestration._dataflow import DataFlow

pytestmark = pytest.mark.anyio

CONCURRENT_MODES = [
    pytest.param(mode, id=mode.value)
    for mode in (ExecutionMode.Sequential, ExecutionMode.Parallel, ExecutionMode.Conditional)
]

RESULT_KEYS = {
    "execution_id",
    "workflow_id",
    "status",
    "data",
    "error",
    "error_code",
    "started_at",
    "finished_at",
    "duration_ms",
    "steps",
}
STEP_RESULT_KEYS = {
    "status",
    "result",
    "error",
    "error_code",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
}
STATUS_KEYS = {
    "execution_id",
    "workflow_id",
    "status",
    "progress",
    "current_step",
    "running_steps",
    "completed_steps",
    "failed_steps",
    "skipped_steps",
    "cancelled_steps",  # beyond SPEC 5's list, which says "at least"
    "total_steps",
    "steps",
    "started_at",
    "finished_at",
    "error",
    "error_code",
}


# -- input mapping ----------------------------------------------------------------------------


def _diamond(mode: ExecutionMode, rng: random.Random) -> Workflow:
    """a → (c, b) → d, plus an unrelated e; c is added before b, so c precedes b in
    topological order. b and c sleep for random times, so they finish in any order."""

    def jitter() -> float:
        return rng.uniform(0, 0.004)

    return workflow(
        f"diamond-{rng.random()}",
        step("a", params={"returns": {"a_over_init": "a", "param_wins": "a", "tie": "a"}}),
        step("c", after=["a"], params={"sleep": jitter(), "returns": {"tie": "c", "c": 1}}),
        step("b", after=["a"], params={"sleep": jitter(), "returns": {"tie": "b", "b": 1}}),
        step("d", after=["b", "c"], params={"param_wins": "param", "param_only": 1}),
        step("e", params={"sleep": jitter(), "returns": {"e": 1, "tie": "e"}}),
        mode=mode,
    )


INITIAL = {"init_only": 1, "a_over_init": "init", "param_wins": "init"}


@pytest.mark.parametrize("mode", CONCURRENT_MODES)
async def test_input_is_initial_data_then_upstream_outputs_in_topological_order_then_parameters(
    mode: ExecutionMode,
) -> None:
    """A join's input is initial_data, then its transitive upstream outputs in topological order
    (ties by add_step order), then its parameters, whatever order parallel branches end in."""
    rng = random.Random(1234)
    for _ in range(8):
        probe = Probe()
        async with AsyncPluginOrchestrator(manager_with(probe)) as o:
            results = await run(o, _diamond(mode, rng), INITIAL)
        assert statuses(results) == dict.fromkeys("acbde", "completed")
        assert probe.inputs_of("d") == {
            "init_only": 1,
            "a_over_init": "a",
            "tie": "b",
            "b": 1,
            "c": 1,
            "param_wins": "param",
            "param_only": 1,
        }
        assert results["data"] == {
            "init_only": 1,
            "a_over_init": "a",
            "param_wins": "a",
            "tie": "e",
            "b": 1,
            "c": 1,
            "e": 1,
        }


async def test_return_values_contribute_keys_by_kind() -> None:
    """A returned mapping contributes its keys, None nothing, any other value {step_id: value}."""
    probe = Probe()
    proxy = MappingProxyType({"from_proxy": 2})
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "kinds",
                step("mapping", params={"returns": {"from_mapping": 1}}),
                step("proxy", params={"returns": proxy}),
                step("nothing", params={"returns": None}),
                step("number", params={"returns": 42}),
                step("listing", params={"returns": [1, 2]}),
                step("sink", after=["mapping", "proxy", "nothing", "number", "listing"]),
            ),
            {"seed": 0},
        )
    expected = {"seed": 0, "from_mapping": 1, "from_proxy": 2, "number": 42, "listing": [1, 2]}
    assert statuses(results) == dict.fromkeys(results["steps"], "completed")
    assert probe.inputs_of("sink") == expected
    assert results["data"] == expected
    assert results["steps"]["nothing"]["result"] is None
    assert results["steps"]["number"]["result"] == 42


async def test_pipeline_steps_see_only_their_direct_dependencies() -> None:
    """In Pipeline mode roots get initial_data, other steps only their direct dependencies'
    merged output plus parameters, and the final data is the sinks' merged output."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "pipe",
                step("a", params={"returns": {"a": 1, "dup": "a"}}),
                step("b", after=["a"], params={"p": 1, "returns": {"b": 1, "dup": "b"}}),
                step("d", after=["a"], params={"returns": {"d": 1, "dup": "d"}}),
                step("c", after=["d", "b"], params={"returns": {"c": 1, "dup": "c"}}),
                step("e", after=["a"], params={"returns": {"e": 1, "dup": "e"}}),
                mode=ExecutionMode.Pipeline,
            ),
            {"i": 1},
        )

    def seen(step_id: str) -> dict[str, Any]:
        inputs = probe.inputs_of(step_id)
        inputs.pop("returns")
        return inputs

    assert statuses(results) == dict.fromkeys("abdce", "completed")
    assert seen("a") == {"i": 1}
    assert seen("b") == {"a": 1, "dup": "a", "p": 1}
    assert seen("d") == {"a": 1, "dup": "a"}
    assert seen("c") == {"b": 1, "d": 1, "dup": "d"}
    assert results["data"] == {"c": 1, "e": 1, "dup": "e"}


def _fan_out(mode: ExecutionMode) -> Workflow:
    """root → (b1 → g1 → gg1, b2, b3)."""
    return workflow(
        "fan",
        step("root", params={"returns": {"root": 1}}),
        step("b1", after=["root"], params={"returns": {"b1": 1}}),
        step("g1", after=["b1"], params={"returns": {"g1": 1}}),
        step("gg1", after=["g1"]),
        step("b2", after=["root"], params={"returns": {"b2": 1}}),
        step("b3", after=["root"], params={"returns": {"b3": 1}}),
        mode=mode,
    )


@pytest.mark.parametrize("mode", CONCURRENT_MODES)
async def test_fan_out_branches_do_not_see_each_other(mode: ExecutionMode) -> None:
    """Siblings sharing an upstream never see each other's output, only their own line's."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(o, _fan_out(mode), {"i": 0})
    assert statuses(results) == dict.fromkeys(results["steps"], "completed")
    upstream = {call.step_id: set(call.inputs) - {"returns"} for call in probe.calls}
    assert upstream == {
        "root": {"i"},
        "b1": {"i", "root"},
        "g1": {"i", "root", "b1"},
        "gg1": {"i", "root", "b1", "g1"},
        "b2": {"i", "root"},
        "b3": {"i", "root"},
    }


@pytest.mark.parametrize("mode", CONCURRENT_MODES)
async def test_a_step_input_mapping_never_changes_after_it_started(mode: ExecutionMode) -> None:
    """The mapping a step received as context.inputs still holds the same items after the
    run: the engine never reuses it for a later step's input."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(o, _fan_out(mode), {"i": 0})
    assert results["status"] == "completed"
    changed = {
        call.step_id: sorted(set(call.live_inputs) - set(call.inputs))
        for call in probe.calls
        if dict(call.live_inputs) != call.inputs
    }
    assert changed == {}


async def test_a_step_result_never_changes_after_the_step_completed() -> None:
    """A pass-through step returning its input mapping keeps, as its recorded result, what it
    returned: later steps' outputs never appear in it."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        results = await run(
            o,
            workflow(
                "echo",
                step("a", params={"returns": {"a": 1}}),
                step("b", "echo", after=["a"]),
                step("c", after=["b"], params={"returns": {"c": 1}}),
                step("d", after=["c"]),
            ),
            {"i": 0},
        )
    assert statuses(results) == dict.fromkeys("abcd", "completed")
    assert dict(results["steps"]["b"]["result"]) == {"i": 0, "a": 1}
    assert results["data"] == {"i": 0, "a": 1, "c": 1}


async def test_a_step_cannot_change_other_steps_inputs_through_its_own() -> None:
    """Writing into context.inputs (documented read-only) is refused or stays private: no
    other step and not the final data sees it."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "scribble",
                step("writer", "scribble"),
                step("other_root"),
                step("child", after=["writer"]),
                mode=ExecutionMode.Sequential,
            ),
            {"i": 0},
        )
    assert statuses(results) == dict.fromkeys(("writer", "other_root", "child"), "completed")
    assert probe.inputs_of("other_root") == {"i": 0}
    assert set(probe.inputs_of("child")) == {"i", "writer"}
    assert "scribbled" not in results["data"]


# -- scale --------------------------------------------------------------------------------------


class _CountedOutput(Mapping[str, Any]):
    """A step output that counts every read the engine makes of it."""

    def __init__(self, counter: list[int], data: dict[str, Any]) -> None:
        self._counter = counter
        self._data = data

    def __getitem__(self, key: str) -> Any:
        self._counter[0] += 1
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        self._counter[0] += 1
        return iter(self._data)

    def __len__(self) -> int:
        self._counter[0] += 1
        return len(self._data)


class _Chain:
    """Each step adds one key and remembers how many keys its input had."""

    plugin_id = "chain"

    def __init__(self) -> None:
        self.reads = [0]
        self.input_sizes: list[int] = []

    async def add(self, context: StepContext) -> Mapping[str, Any]:
        self.input_sizes.append(len(context.inputs))
        return _CountedOutput(self.reads, {context.step_id: True})


async def test_a_thousand_step_chain_merges_each_output_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In a 1,000-step chain every step sees all earlier outputs, yet each output is read
    and merged a constant number of times (no quadratic re-merging) and the run is quick."""
    steps = 1_000
    chain = _Chain()
    merged: list[int] = []  # outputs folded by each whole-ancestry merge
    original_merge = DataFlow._merge

    def counting_merge(flow: DataFlow, indices: list[int]) -> dict[str, Any]:
        merged.append(len(indices))
        return original_merge(flow, indices)

    monkeypatch.setattr(DataFlow, "_merge", counting_merge)
    built = workflow(
        "chain",
        *(
            step(f"s{i}", "add", plugin="chain", after=[f"s{i - 1}"] if i else [])
            for i in range(steps)
        ),
    )
    async with AsyncPluginOrchestrator(manager_with(chain)) as o:
        began = anyio.current_time()
        results = await run(o, built, {"i": 0})
        elapsed = anyio.current_time() - began
    assert results["status"] == "completed"
    assert chain.input_sizes == list(range(1, steps + 1))
    assert results["data"] == {"i": 0, **{f"s{i}": True for i in range(steps)}}
    assert chain.reads[0] <= 10 * steps
    assert sum(merged) <= 2 * steps  # the final data only: steps extend their input
    assert elapsed < 5.0


# -- results and status dictionaries ----------------------------------------------------------


async def test_results_dictionary_has_exactly_the_documented_keys() -> None:
    """get_workflow_results has SPEC 4's keys, each step SPEC 4's keys (plus 'reason' when
    skipped), with ISO timestamps and consistent durations."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        results = await run(
            o,
            workflow(
                "keys",
                step("done", params={"returns": {"x": 1}}),
                step("broken", "fail", critical=False),
                step("skipped", after=["broken"]),
            ),
        )
    assert set(results) == RESULT_KEYS
    assert results["workflow_id"] == "keys"
    assert results["status"] == "completed"
    assert (results["error"], results["error_code"]) == (None, None)
    assert set(results["steps"]["done"]) == STEP_RESULT_KEYS
    assert set(results["steps"]["broken"]) == STEP_RESULT_KEYS
    assert set(results["steps"]["skipped"]) == STEP_RESULT_KEYS | {"reason"}
    done = results["steps"]["done"]
    assert (done["status"], done["result"], done["attempts"]) == ("completed", {"x": 1}, 1)
    assert (done["error"], done["error_code"]) == (None, None)
    broken = results["steps"]["broken"]
    assert broken["error_code"] == "ExecutionFailed"
    assert isinstance(broken["error"], str)
    skipped = results["steps"]["skipped"]
    assert (skipped["attempts"], skipped["started_at"], skipped["duration_ms"]) == (0, None, None)
    started = datetime.fromisoformat(results["started_at"])
    finished = datetime.fromisoformat(results["finished_at"])
    assert started.tzinfo is not None
    assert started <= datetime.fromisoformat(done["started_at"]) <= finished
    assert results["duration_ms"] == pytest.approx(
        (finished - started).total_seconds() * 1000, abs=0.01
    )
    assert 0 <= done["duration_ms"] <= results["duration_ms"]


async def test_each_results_call_returns_a_dictionary_the_caller_owns() -> None:
    """Changing a returned results dictionary (its data included) does not change what the
    next get_workflow_results call returns."""
    async with AsyncPluginOrchestrator(manager_with(Probe())) as o:
        first = await run(o, workflow("own", step("s", params={"returns": {"x": 1}})))
        first["data"]["x"] = "changed"
        first["data"]["added"] = True
        first["steps"]["s"]["status"] = "changed"
        second = (await o.get_workflow_results(first["execution_id"])).value()
    assert second["data"] == {"x": 1}
    assert second["steps"]["s"]["status"] == "completed"


async def test_results_before_the_end_are_invalid_state() -> None:
    """get_workflow_results on a running execution returns InvalidState, then works once done."""
    probe = Probe()
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        slow = workflow("slow", step("wait", "report", params={"fraction": 0.5}))
        execution_id = await start(o, slow)
        early = await o.get_workflow_results(execution_id)
        probe.gate().set()
        finished = await o.wait_workflow(execution_id)
        late = await o.get_workflow_results(execution_id)
    assert early.error().code is PluginErrorCode.InvalidState
    assert execution_id in early.error().message
    assert late.value() == finished.value()
    assert late.value()["status"] == "completed"


async def test_status_is_readable_while_the_execution_runs() -> None:
    """While steps run, the status shows them, the counts, and progress including the
    running steps' reported fractions; it stays available after the end."""
    probe = Probe()
    built = workflow(
        "live",
        step("first"),
        step("left", "report", after=["first"], params={"fraction": 0.5}),
        step("right", "report", after=["first"], params={"fraction": 0.25}),
        step("last", after=["left", "right"]),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(probe)) as o:
        with anyio.fail_after(10):
            execution_id = await start(o, built)
            await probe.started("left").wait()
            await probe.started("right").wait()
            await anyio.lowlevel.checkpoint()
            running = (await o.get_workflow_status(execution_id)).value()
            probe.gate().set()
            await o.wait_workflow(execution_id)
            final = (await o.get_workflow_status(execution_id)).value()
    assert set(running) == STATUS_KEYS
    assert running["status"] == "running"
    assert running["running_steps"] == ["left", "right"]
    assert running["current_step"] in {"left", "right"}
    assert running["steps"] == {
        "first": "completed",
        "left": "running",
        "right": "running",
        "last": "pending",
    }
    counts = ("completed_steps", "failed_steps", "skipped_steps", "cancelled_steps", "total_steps")
    assert [running[key] for key in counts] == [1, 0, 0, 0, 4]
    assert running["progress"] == pytest.approx(100 * (1 + 0.5 + 0.25) / 4)
    assert running["finished_at"] is None
    assert (running["error"], running["error_code"]) == (None, None)
    assert final["status"] == "completed"
    assert final["progress"] == 100.0
    assert (final["current_step"], final["running_steps"]) == (None, [])
    assert final["steps"] == dict.fromkeys(("first", "left", "right", "last"), "completed")
    assert final["finished_at"] is not None
