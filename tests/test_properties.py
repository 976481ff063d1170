"""Property tests of the scheduler (SPEC 4 and 5) on random DAGs.

Each example is a random workflow: up to 12 steps whose dependencies are drawn from
earlier steps, added in a random order, in a random `ExecutionMode`, each step with
random behaviour (succeed, fail, fail its first attempts and retry, a false condition,
a short sleep, async or sync). It runs on the async engine under asyncio and trio; the
plugin records when each attempt starts and ends and what it received, and the outcome
is checked against an oracle written from the SPEC.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, Literal

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from qtforge import PluginManager
from qtforge.orchestration import (
    AsyncPluginOrchestrator,
    ExecutionMode,
    StepContext,
    Workflow,
    WorkflowStep,
)
from qtforge.orchestration._records import iso_time

settings.register_profile(
    "qtforge-properties",
    max_examples=300,
    deadline=None,
    derandomize=True,  # the same examples every run: never flaky, no database needed
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # "explain" takes minutes here
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = settings.get_profile("qtforge-properties")

INITIAL = {"shared": "initial", "seed": 0}
EXAMPLE_LIMIT = 20.0  # seconds: an example needs milliseconds; a hang fails, not stalls
ALWAYS = 1_000  # "fails on every attempt"
FINISHED_OK = ("completed", "failed", "skipped")

# -- the model ---------------------------------------------------------------------------


@attrs.frozen
class StepPlan:
    """What one step does; its id is ``s<index>`` and its parents have lower indices."""

    parents: tuple[int, ...]
    failures: int  # attempts that fail before one succeeds (`ALWAYS`: every attempt)
    max_retries: int
    critical: bool
    condition: bool | None  # None: no condition; else what the condition evaluates to
    condition_form: Literal["callable", "expression"]
    sync: bool
    sleep: float
    output: Literal["mapping", "none", "scalar"]
    override: bool  # its parameters also set the "shared" key

    @property
    def fails(self) -> bool:
        """Whether it fails for good (after its retries), if it runs."""
        return self.failures > self.max_retries

    @property
    def attempts(self) -> int:
        """How many attempts it makes, if it runs."""
        return min(self.failures, self.max_retries) + 1


@attrs.frozen
class Case:
    mode: ExecutionMode
    steps: tuple[StepPlan, ...]
    add_order: tuple[int, ...]  # the order of `add_step` calls, as step indices

    @property
    def dependents(self) -> list[list[int]]:
        found: list[list[int]] = [[] for _ in self.steps]
        for index, plan in enumerate(self.steps):
            for parent in plan.parents:
                found[parent].append(index)
        return found

    def topological_order(self) -> list[int]:
        """Dependency order, ties broken by `add_step` order (SPEC 5)."""
        position = {index: place for place, index in enumerate(self.add_order)}
        waiting = [len(plan.parents) for plan in self.steps]
        dependents = self.dependents
        ready = [(position[i], i) for i, count in enumerate(waiting) if not count]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            _, index = heapq.heappop(ready)
            order.append(index)
            for child in dependents[index]:
                waiting[child] -= 1
                if not waiting[child]:
                    heapq.heappush(ready, (position[child], child))
        return order

    def ancestors(self, index: int) -> set[int]:
        found: set[int] = set()
        stack = list(self.steps[index].parents)
        while stack:
            parent = stack.pop()
            if parent not in found:
                found.add(parent)
                stack.extend(self.steps[parent].parents)
        return found


def step_id(index: int) -> str:
    return f"s{index}"


def parameters(index: int, plan: StepPlan) -> dict[str, Any]:
    extra = {"shared": f"param-{step_id(index)}"} if plan.override else {}
    return {f"p_{step_id(index)}": index, **extra}


def output(index: int, plan: StepPlan) -> Any:
    """What the step returns when it succeeds."""
    if plan.output == "mapping":
        return {"shared": step_id(index), f"o_{step_id(index)}": index}
    if plan.output == "scalar":
        return 10 * index + 1
    return None


def contribution(index: int, plan: StepPlan) -> dict[str, Any]:
    """What the step adds to the data (SPEC 4)."""
    value = output(index, plan)
    if value is None:
        return {}
    return value if isinstance(value, dict) else {step_id(index): value}


# -- strategies ------------------------------------------------------------------------


def step_plans(parents: tuple[int, ...]) -> st.SearchStrategy[StepPlan]:
    return st.builds(
        StepPlan,
        parents=st.just(parents),
        failures=st.sampled_from([0, 0, 0, 0, 1, 2, ALWAYS]),
        max_retries=st.integers(0, 2),
        critical=st.sampled_from([False, False, False, True]),
        condition=st.sampled_from([None, None, True, False]),
        condition_form=st.sampled_from(["callable", "expression"]),
        sync=st.booleans(),
        sleep=st.sampled_from([0.0, 0.0, 0.002]),
        output=st.sampled_from(["mapping", "none", "scalar"]),
        override=st.booleans(),
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1, 12))
    steps: list[StepPlan] = []
    for index in range(count):
        parents = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
        steps.append(draw(step_plans(tuple(sorted(parents)))))
    add_order = draw(st.permutations(range(count)))
    mode = draw(st.sampled_from(list(ExecutionMode)))
    return Case(mode, tuple(steps), tuple(add_order))


# -- the workflow and the plugin that records it ---------------------------------------


def gate(key: str, value: bool, inputs: Mapping[str, Any]) -> bool:
    """A callable condition: `value`, once it has checked it sees the step's parameter."""
    return bool(inputs[key] >= 0) == value


def condition(index: int, plan: StepPlan) -> Any:
    if plan.condition is None:
        return None
    key = f"p_{step_id(index)}"
    if plan.condition_form == "callable":
        return partial(gate, key, plan.condition)
    return f"{key} >= 0" if plan.condition else f"{key} < 0"


def build(case: Case) -> Workflow:
    workflow = Workflow("dag").set_execution_mode(case.mode)
    for index in case.add_order:
        plan = case.steps[index]
        workflow.add_step(
            WorkflowStep(
                step_id(index),
                "probe",
                "run_sync" if plan.sync else "run_async",
                parameters=parameters(index, plan),
                dependencies=[step_id(parent) for parent in plan.parents],
                max_retries=plan.max_retries,
                retry_delay=0,
                retry_jitter=0,
                critical=plan.critical,
                condition=condition(index, plan),
            )
        )
    return workflow


class Boom(Exception):
    pass


@attrs.frozen
class Event:
    seq: int
    kind: Literal["start", "end"]
    step: int
    attempt: int
    ok: bool = True
    inputs: Mapping[str, Any] | None = None


class Probe:
    """The plugin every step calls: it behaves as the step's plan says and logs it."""

    plugin_id = "probe"

    def __init__(self, case: Case) -> None:
        self.case = case
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._events: list[Event] = []

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def _log(self, kind: Literal["start", "end"], context: StepContext, **fields: Any) -> None:
        with self._lock:
            index = int(context.step_id[1:])
            self._events.append(Event(next(self._seq), kind, index, context.attempt, **fields))

    def _begin(self, context: StepContext) -> StepPlan:
        self._log("start", context, inputs=dict(context.inputs))
        return self.case.steps[int(context.step_id[1:])]

    def _end(self, context: StepContext, plan: StepPlan) -> Any:
        ok = context.attempt > plan.failures
        self._log("end", context, ok=ok)
        if not ok:
            raise Boom(f"{context.step_id} attempt {context.attempt}")
        return output(int(context.step_id[1:]), plan)

    async def run_async(self, context: StepContext) -> Any:
        plan = self._begin(context)
        if plan.sleep:
            await anyio.sleep(plan.sleep)
        return self._end(context, plan)

    def run_sync(self, context: StepContext) -> Any:
        plan = self._begin(context)
        if plan.sleep:
            time.sleep(plan.sleep)
        return self._end(context, plan)


async def execute(case: Case, probe: Probe) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `case` on a fresh engine; its results and final status dictionaries."""
    manager = PluginManager()
    manager.register_plugin(probe)
    with anyio.fail_after(EXAMPLE_LIMIT):
        async with AsyncPluginOrchestrator(manager) as engine:
            engine.register_workflow(build(case)).value()
            results = (await engine.run_workflow("dag", INITIAL)).value()
            status = (await engine.get_workflow_status(results["execution_id"])).value()
    return results, status


# -- the oracle ------------------------------------------------------------------------


@attrs.frozen
class Expectation:
    """Final step statuses by index. Not `exact` when a critical failure in a concurrent
    mode cancels whatever happened to run: each step then ends as predicted or
    ``cancelled``."""

    statuses: tuple[str, ...]
    exact: bool
    critical_failure: bool


def expect(case: Case) -> Expectation:
    """Predict every step's final status (SPEC 5).

    Walk the steps in topological order. A step runs when its dependencies completed
    (in Conditional mode: when at least one did), else it is skipped; a false condition
    skips it; it fails if its failures outlast its retries. In Sequential mode a
    critical failure stops the walk: later steps are cancelled, except those already
    skipped because every dependency had finished without completing. In the concurrent
    modes the walk ignores the stop, and the prediction is only an upper bound.
    """
    conditional = case.mode is ExecutionMode.Conditional
    sequential = case.mode is ExecutionMode.Sequential
    statuses: dict[int, str] = {}
    released: set[int] = set()  # finished, and its dependents were told so
    stopped = critical_failure = False

    def runnable(parents: tuple[int, ...]) -> bool:
        completed = [statuses[parent] == "completed" for parent in parents]
        return not parents or (any(completed) if conditional else all(completed))

    for index in case.topological_order():
        plan = case.steps[index]
        if stopped:
            settled = all(parent in released for parent in plan.parents)
            statuses[index] = "skipped" if settled and not runnable(plan.parents) else "cancelled"
            if statuses[index] == "skipped":
                released.add(index)
            continue
        if not runnable(plan.parents) or plan.condition is False:
            statuses[index] = "skipped"
        elif plan.fails:
            statuses[index] = "failed"
            if plan.critical:
                critical_failure = True
                stopped = sequential
                if stopped:
                    continue  # a critical failure does not release its dependents
        else:
            statuses[index] = "completed"
        released.add(index)
    ordered = tuple(statuses[index] for index in range(len(case.steps)))
    return Expectation(
        ordered, exact=sequential or not critical_failure, critical_failure=critical_failure
    )


def merged(case: Case, steps: list[int], base: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(base)
    for index in steps:
        data.update(contribution(index, case.steps[index]))
    return data


def expected_inputs(case: Case, index: int, statuses: list[str]) -> dict[str, Any]:
    """A step's input mapping (SPEC 4): initial data, then the outputs of its completed
    upstream steps in topological order (Pipeline: its direct dependencies only), then
    its own parameters."""
    order = case.topological_order()
    plan = case.steps[index]
    if case.mode is ExecutionMode.Pipeline:
        upstream = set(plan.parents)
        base: Mapping[str, Any] = {} if plan.parents else INITIAL
    else:
        upstream = case.ancestors(index)
        base = INITIAL
    completed = [i for i in order if i in upstream and statuses[i] == "completed"]
    return {**merged(case, completed, base), **parameters(index, plan)}


def expected_data(case: Case, statuses: list[str]) -> dict[str, Any]:
    """The results' ``data`` (SPEC 4): initial data and every completed step's output in
    topological order; in Pipeline mode, the merged output of the completed sinks."""
    order = case.topological_order()
    completed = [index for index in order if statuses[index] == "completed"]
    if case.mode is ExecutionMode.Pipeline:
        dependents = case.dependents
        return merged(case, [index for index in completed if not dependents[index]], {})
    return merged(case, completed, INITIAL)


# -- the checks ------------------------------------------------------------------------


def check_statuses(case: Case, results: dict[str, Any]) -> list[str]:
    expectation = expect(case)
    actual = [results["steps"][step_id(i)]["status"] for i in range(len(case.steps))]
    if expectation.exact:
        assert actual == list(expectation.statuses)
    else:
        for index, (got, predicted) in enumerate(zip(actual, expectation.statuses, strict=True)):
            assert got in (predicted, "cancelled"), (index, got, predicted)
        assert any(
            got == "failed" and case.steps[index].critical for index, got in enumerate(actual)
        ), "a critical failure must have been recorded"
    if expectation.critical_failure:
        assert (results["status"], results["error_code"]) == ("failed", "ExecutionFailed")
    else:
        assert (results["status"], results["error"]) == ("completed", None)
    return actual


def check_attempts(case: Case, results: dict[str, Any], events: list[Event]) -> None:
    """Attempts number 1, 2, ... with one run each; a step that ran to an outcome made
    ``min(failures, max_retries) + 1`` of them; a skipped step made none and says why."""
    for index, plan in enumerate(case.steps):
        entry = results["steps"][step_id(index)]
        runs = [event.attempt for event in events if event.kind == "start" and event.step == index]
        assert runs == list(range(1, len(runs) + 1)), (index, runs)
        if entry["status"] == "cancelled":
            assert len(runs) <= entry["attempts"]
            continue
        assert len(runs) == entry["attempts"], (index, runs, entry)
        if entry["status"] == "skipped":
            assert entry["attempts"] == 0
            assert entry["reason"], "a skipped step says why"
        else:
            assert entry["attempts"] == plan.attempts, (index, entry)
            assert (entry["error_code"] == "ExecutionFailed") == (entry["status"] == "failed")


def check_ordering(case: Case, statuses: list[str], events: list[Event]) -> None:
    """Every attempt starts after its dependencies finished (completed, except for
    Conditional OR-joins, which need one completed) and after its own previous attempt."""
    last_end: dict[int, Event] = {}
    for event in sorted(events, key=lambda event: event.seq):
        if event.kind == "end":
            last_end[event.step] = event
            continue
        plan = case.steps[event.step]
        if event.attempt > 1:
            assert last_end[event.step].attempt == event.attempt - 1
        finished = {parent: last_end.get(parent) for parent in plan.parents}
        completed = [p for p, end in finished.items() if end is not None and end.ok]
        if case.mode is ExecutionMode.Conditional:
            for parent, end in finished.items():
                if statuses[parent] != "skipped":
                    assert end is not None
                    assert end.attempt == case.steps[parent].attempts
                else:
                    assert end is None
            assert completed or not plan.parents, (event, finished)
        else:
            assert len(completed) == len(plan.parents), (event, finished)


def check_sequential(case: Case, events: list[Event]) -> None:
    """Sequential mode runs one attempt at a time, steps in topological order."""
    running = 0
    for event in sorted(events, key=lambda event: event.seq):
        running += 1 if event.kind == "start" else -1
        assert running in (0, 1), event
    started = [event.step for event in events if event.kind == "start" and event.attempt == 1]
    assert started == [index for index in case.topological_order() if index in started]


def check_data(
    case: Case, statuses: list[str], results: dict[str, Any], events: list[Event]
) -> None:
    """Each attempt saw the input mapping of SPEC 4, and the final data is the merge of
    the completed steps' outputs."""
    for event in events:
        if event.kind == "start":
            assert event.inputs == expected_inputs(case, event.step, statuses), event
    assert results["data"] == expected_data(case, statuses)


def check_status_dict(statuses: list[str], status: dict[str, Any]) -> None:
    """The final status dictionary agrees with the results."""
    assert status["steps"] == {step_id(i): got for i, got in enumerate(statuses)}
    assert status["progress"] == 100.0
    assert status["running_steps"] == []
    for name in ("completed", "failed", "skipped"):
        assert status[f"{name}_steps"] == statuses.count(name)
    assert status["total_steps"] == len(statuses)


def check_case(case: Case, backend: str) -> None:
    probe = Probe(case)
    results, status = anyio.run(execute, case, probe, backend=backend)
    events = probe.events
    statuses = check_statuses(case, results)
    check_attempts(case, results, events)
    check_ordering(case, statuses, events)
    check_data(case, statuses, results, events)
    check_status_dict(statuses, status)
    if case.mode is ExecutionMode.Sequential:
        check_sequential(case, events)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@PROFILE
@given(case=cases())
def test_scheduler_matches_the_oracle(backend: str, case: Case) -> None:
    """On random DAGs in every mode, step statuses, attempts, start order, each step's
    inputs and the final data are those the SPEC prescribes."""
    check_case(case, backend)


# -- the oracle itself -----------------------------------------------------------------


def plan(*parents: int, **changes: Any) -> StepPlan:
    """A step that succeeds at once, unless `changes` say otherwise."""
    defaults: dict[str, Any] = {
        "failures": 0,
        "max_retries": 0,
        "critical": True,
        "condition": None,
        "condition_form": "callable",
        "sync": False,
        "sleep": 0.0,
        "output": "mapping",
        "override": False,
    }
    return StepPlan(tuple(parents), **{**defaults, **changes})


ORACLE_CASES: list[tuple[ExecutionMode, tuple[StepPlan, ...], tuple[str, ...]]] = [
    # a failing non-critical root: its dependent is skipped, the rest completes
    (
        ExecutionMode.Parallel,
        (plan(failures=ALWAYS, critical=False), plan(0), plan()),
        ("failed", "skipped", "completed"),
    ),
    # Conditional OR-join: runs because one of its dependencies completed
    (
        ExecutionMode.Conditional,
        (plan(condition=False), plan(), plan(0, 1)),
        ("skipped", "completed", "completed"),
    ),
    # Sequential critical failure: the pending step is cancelled, the one whose only
    # dependency was skipped earlier stays skipped
    (
        ExecutionMode.Sequential,
        (plan(condition=False), plan(0), plan(failures=ALWAYS), plan()),
        ("skipped", "skipped", "failed", "cancelled"),
    ),
    # retries that outlast the failures complete the step
    (ExecutionMode.Pipeline, (plan(failures=2, max_retries=2), plan(0)), ("completed",) * 2),
]


@pytest.mark.parametrize(("mode", "steps", "statuses"), ORACLE_CASES)
def test_oracle_on_hand_written_cases(
    mode: ExecutionMode, steps: tuple[StepPlan, ...], statuses: tuple[str, ...]
) -> None:
    """The oracle predicts hand-checked outcomes, and the engine agrees on both backends."""
    case = Case(mode, steps, tuple(range(len(steps))))
    assert expect(case).statuses == statuses
    for backend in ("asyncio", "trio"):
        check_case(case, backend)


def test_topological_order_breaks_ties_by_add_order() -> None:
    """Among steps ready together, the one added first comes first."""
    case = Case(ExecutionMode.Sequential, (plan(), plan(), plan(0)), (1, 2, 0))
    assert case.topological_order() == [1, 0, 2]


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_iso_times_never_run_past_the_moment_they_show(seconds: float) -> None:
    """An ISO time read back is never later than the moment it was written from, so a
    time copied from status or history into a lower bound (``--since``) keeps it."""
    text = iso_time(seconds)
    assert text is not None
    back = datetime.fromisoformat(text).timestamp()
    assert back <= seconds
    assert seconds - back < 2e-6
