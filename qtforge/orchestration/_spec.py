"""Registered workflows: validation into an immutable, pre-planned snapshot.

`validate_workflow` is a pure function from a `Workflow` builder to a `WorkflowSpec`
(or the first problem found). Everything the scheduler needs per execution (step
indices, dependency and dependent lists, the topological order) is computed here once,
with iterative algorithms, so a 100,000-step workflow validates in a fraction of a
second and an execution never re-plans.
"""

from __future__ import annotations

import copy
import gc
import heapq
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from .._errors import Expected, PluginError, PluginErrorCode
from ._conditions import CompiledCondition, compile_condition
from ._model import ExecutionMode
from ._retry import RetryPolicy
from ._workflow import Workflow, WorkflowStep

__all__ = ["StepSpec", "WorkflowSpec", "to_workflow", "validate_workflow"]

_NO_PARAMETERS: Mapping[str, Any] = MappingProxyType({})
_NO_ROLLBACKS: Mapping[int, Any] = MappingProxyType({})


@attrs.frozen
class StepSpec:
    """An immutable copy of a `WorkflowStep` (times in milliseconds, as given)."""

    step_id: str
    plugin_id: str
    method_name: str
    parameters: Mapping[str, Any]
    dependencies: tuple[str, ...]
    timeout: float | None
    retry: RetryPolicy
    critical: bool
    condition: CompiledCondition | None
    name: str
    description: str
    executor: str | None = None
    """The name of the executor that runs the step, or ``None`` for the engine's default."""
    timeout_seconds: float | None = attrs.field(init=False)
    """The per-attempt bound in seconds, or ``None`` for none."""

    @timeout_seconds.default
    def _timeout_seconds(self) -> float | None:
        return self.timeout / 1000 if self.timeout else None


@attrs.frozen
class WorkflowSpec:
    """An immutable, validated workflow with its dependency graph laid out by index.

    Attributes:
        steps: The steps in ``add_step`` order; a step's index is its place here.
        deps: For each step index, the indices of its dependencies.
        dependents: For each step index, the indices of the steps that depend on it.
        order: Step indices in topological order, ties broken by ``add_step`` order.
        position: For each step index, its place in `order`.
    """

    workflow_id: str
    name: str
    description: str
    mode: ExecutionMode
    timeout: float | None
    steps: tuple[StepSpec, ...]
    index: Mapping[str, int]
    deps: tuple[tuple[int, ...], ...]
    dependents: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]
    position: tuple[int, ...]
    rollbacks: Mapping[int, StepSpec] = _NO_ROLLBACKS
    """Step index -> the step that compensates it (`Workflow.add_rollback_step`)."""

    @property
    def timeout_seconds(self) -> float | None:
        """The whole execution's bound in seconds, or ``None`` for none."""
        return self.timeout / 1000 if self.timeout else None


def validate_workflow(workflow: Workflow) -> Expected[WorkflowSpec, PluginError]:
    """Check `workflow` and snapshot it.

    Returns:
        The snapshot, or the first problem: ``InvalidConfiguration`` (empty ids, no
        steps, duplicate step ids, a bad condition, a rollback step for an unknown
        step or with dependencies or a condition), ``DependencyMissing`` (a dependency
        on an unknown step) or ``CircularDependency`` (naming the cycle's steps).
    """
    # Building a large workflow allocates hundreds of thousands of acyclic objects;
    # generational collections in the middle would only traverse them in vain.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return Expected.ok(_build(workflow))
    except PluginError as error:
        return Expected.fail(error)
    finally:
        if collecting:
            gc.enable()


def _fail(code: PluginErrorCode, workflow_id: str, message: str) -> PluginError:
    return PluginError(code, f"workflow {workflow_id!r}: {message}")


def _build(workflow: Workflow) -> WorkflowSpec:
    workflow_id = workflow.workflow_id
    if not workflow_id:
        raise PluginError(PluginErrorCode.InvalidConfiguration, "workflow id must not be empty")
    steps = workflow.steps
    if not steps:
        raise _fail(PluginErrorCode.InvalidConfiguration, workflow_id, "has no steps")

    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        for field in ("step_id", "plugin_id", "method_name"):
            if not getattr(step, field):
                where = f"step {step.step_id!r}" if step.step_id else f"step #{i + 1}"
                raise _fail(
                    PluginErrorCode.InvalidConfiguration,
                    workflow_id,
                    f"{where} has an empty {field}",
                )
        if index.setdefault(step.step_id, i) != i:
            raise _fail(
                PluginErrorCode.InvalidConfiguration,
                workflow_id,
                f"step id {step.step_id!r} is used by more than one step",
            )

    deps: list[tuple[int, ...]] = []
    dependents: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        own: list[int] = []
        for name in dict.fromkeys(step.dependencies):  # drop repeats, keep order
            j = index.get(name)
            if j is None:
                raise _fail(
                    PluginErrorCode.DependencyMissing,
                    workflow_id,
                    f"step {step.step_id!r} depends on {name!r}, which is not a step",
                )
            if j == i:
                raise _fail(
                    PluginErrorCode.CircularDependency,
                    workflow_id,
                    f"step {name!r} depends on itself: {name} -> {name}",
                )
            own.append(j)
            dependents[j].append(i)
        deps.append(tuple(own))

    order = _topological_order(deps, dependents)
    if len(order) < len(steps):
        cycle = _find_cycle(deps, set(range(len(steps))) - set(order))
        path = " -> ".join(steps[i].step_id for i in cycle)
        raise _fail(
            PluginErrorCode.CircularDependency,
            workflow_id,
            f"steps form a dependency cycle: {path} (each runs after the one before it)",
        )
    position = [0] * len(steps)
    for place, i in enumerate(order):
        position[i] = place

    return WorkflowSpec(
        workflow_id=workflow_id,
        name=workflow.name,
        description=workflow.description,
        mode=workflow.execution_mode,
        timeout=workflow.timeout,
        steps=_snapshot_steps(workflow_id, steps),
        index=MappingProxyType(index),
        deps=tuple(deps),
        dependents=tuple(tuple(d) for d in dependents),
        order=tuple(order),
        position=tuple(position),
        rollbacks=_snapshot_rollbacks(workflow, index),
    )


def _snapshot_rollbacks(workflow: Workflow, index: Mapping[str, int]) -> Mapping[int, StepSpec]:
    rollbacks = workflow.rollback_steps
    if not rollbacks:
        return _NO_ROLLBACKS
    workflow_id = workflow.workflow_id
    for step_id, rollback in rollbacks.items():
        where = f"the rollback step of {step_id!r}"
        problem = None
        if step_id not in index:
            problem = "is for a step that does not exist"
        elif rollback.dependencies or rollback.condition is not None:
            problem = "must have no dependencies and no condition"
        else:
            for field in ("step_id", "plugin_id", "method_name"):
                if not getattr(rollback, field):
                    problem = f"has an empty {field}"
        if problem is not None:
            raise _fail(PluginErrorCode.InvalidConfiguration, workflow_id, f"{where} {problem}")
    snapshots = _snapshot_steps(workflow_id, list(rollbacks.values()))
    return MappingProxyType(
        {index[step_id]: snapshot for step_id, snapshot in zip(rollbacks, snapshots, strict=True)}
    )


def _topological_order(deps: list[tuple[int, ...]], dependents: list[list[int]]) -> list[int]:
    """Kahn's algorithm; among ready steps the one added first goes first."""
    waiting = [len(d) for d in deps]
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    return order


def _find_cycle(deps: list[tuple[int, ...]], stuck: set[int]) -> list[int]:
    """A cycle among `stuck`, the steps Kahn's algorithm could not order.

    Every stuck step has a stuck dependency, so walking from one to a stuck
    dependency must revisit a step; the walk from that step back to itself is a cycle.
    It is returned in running order, starting and ending with its earliest-added step.
    """
    seen: dict[int, int] = {}
    walk: list[int] = []
    i = min(stuck)
    while i not in seen:
        seen[i] = len(walk)
        walk.append(i)
        i = next(j for j in deps[i] if j in stuck)
    loop = walk[seen[i] :][::-1]  # dependencies first: running order
    start = loop.index(min(loop))
    loop = loop[start:] + loop[:start]
    return [*loop, loop[0]]


def _copy_parameters(parameters: dict[str, Any]) -> Mapping[str, Any]:
    if not parameters:
        return _NO_PARAMETERS
    copied: dict[str, Any] = {}
    for key, value in parameters.items():
        try:
            copied[key] = copy.deepcopy(value)
        except Exception:  # a value that cannot be copied (a lock, a client) is shared
            copied[key] = value
    return MappingProxyType(copied)


def _snapshot_steps(workflow_id: str, steps: list[WorkflowStep]) -> tuple[StepSpec, ...]:
    policies: dict[tuple[Any, ...], RetryPolicy] = {}  # steps mostly share one policy
    snapshots = []
    for step in steps:
        settings = (
            step.max_retries,
            step.retry_delay,
            step.retry_backoff,
            step.retry_max_delay,
            step.retry_jitter,
            step.retry_on,
        )
        try:
            policy = policies.get(settings)
        except TypeError:  # an unhashable retry_on
            policy = RetryPolicy(*settings)
        if policy is None:
            policy = policies[settings] = RetryPolicy(*settings)
        where = f"step {step.step_id!r} of workflow {workflow_id!r}"
        condition = None if step.condition is None else compile_condition(step.condition, where)
        snapshots.append(
            StepSpec(
                step_id=step.step_id,
                plugin_id=step.plugin_id,
                method_name=step.method_name,
                parameters=_copy_parameters(step.parameters),
                dependencies=tuple(step.dependencies),
                timeout=step.timeout,
                retry=policy,
                critical=step.critical,
                condition=condition,
                name=step.name,
                description=step.description,
                executor=step.executor,
            )
        )
    return tuple(snapshots)


def to_workflow(spec: WorkflowSpec) -> Workflow:
    """A fresh `Workflow` builder equal to the one `spec` was made from."""
    workflow = (
        Workflow(spec.workflow_id, spec.name)
        .set_description(spec.description)
        .set_execution_mode(spec.mode)
        .set_timeout(spec.timeout)
    )
    for step in spec.steps:
        workflow.add_step(_to_step(step))
    for index, rollback in spec.rollbacks.items():
        workflow.add_rollback_step(spec.steps[index].step_id, _to_step(rollback))
    return workflow


def _to_step(step: StepSpec) -> WorkflowStep:
    return WorkflowStep(
        step.step_id,
        step.plugin_id,
        step.method_name,
        parameters=_copy_parameters(dict(step.parameters)),
        dependencies=list(step.dependencies),
        timeout=step.timeout,
        max_retries=step.retry.max_retries,
        retry_delay=step.retry.delay,
        retry_backoff=step.retry.backoff,
        retry_max_delay=step.retry.max_delay,
        retry_jitter=step.retry.jitter,
        retry_on=step.retry.retry_on,
        critical=step.critical,
        condition=None if step.condition is None else step.condition.source,
        name=step.name,
        description=step.description,
        executor=step.executor,
    )
