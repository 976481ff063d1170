"""Data flow between steps (SPEC 4), without quadratic copying.

A step's input is ``initial_data``, then the outputs of its completed transitive
upstream steps in topological order, then its own parameters; later keys win. In
Pipeline mode it is the merged output of its direct dependencies only.

Materialising that mapping naively costs O(upstream) per step, so a 1,000-step chain
would copy O(n²) keys. Instead the merged upstream data is a persistent (immutable)
map: a step with a single dependency derives its own from that dependency's in
O(output · log n), and nothing a step was given ever changes afterwards. Only joins
walk their ancestors. Parameters are overlaid with a `ChainMap`, never copied in.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import immutables

from ._model import ExecutionMode
from ._spec import WorkflowSpec

__all__ = ["DataFlow", "contribution"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def contribution(step_id: str, result: object) -> Mapping[str, Any]:
    """What a step's return value adds to its dependents' input (SPEC 4).

    A mapping other than a dict is copied into one, so that a mapping that cannot be
    read fails its own step rather than a dependent.
    """
    if result is None:
        return _EMPTY
    if type(result) is dict:
        return result
    if isinstance(result, Mapping):
        return dict(result)
    return {step_id: result}


class DataFlow:
    """Inputs and final data of one execution; the scheduler feeds it outputs."""

    __slots__ = ("_initial", "_outputs", "_passed_on", "_spec", "_unclaimed")

    def __init__(self, spec: WorkflowSpec, initial: Mapping[str, Any]) -> None:
        self._spec = spec
        self._initial: immutables.Map[str, Any] = immutables.Map(initial)
        self._outputs: list[Mapping[str, Any] | None] = [None] * len(spec.steps)
        # The merged upstream data each started step passes on, kept until every one
        # of its dependents has taken it.
        self._passed_on: dict[int, immutables.Map[str, Any]] = {}
        self._unclaimed = [len(d) for d in spec.dependents]

    def record(self, index: int, output: Mapping[str, Any]) -> None:
        """Step `index` completed with `output` (see `contribution`)."""
        self._outputs[index] = output

    def inputs(self, index: int) -> Mapping[str, Any]:
        """The input mapping of step `index`; call once, when it is about to run."""
        spec = self._spec
        upstream: Mapping[str, Any]
        if spec.mode is ExecutionMode.Pipeline:
            upstream = self._direct(index)
        else:
            upstream = self._upstream(index)
            if spec.dependents[index]:
                self._passed_on[index] = upstream
        return self._with_parameters(index, upstream)

    def replay_inputs(self, index: int) -> Mapping[str, Any]:
        """The input mapping step `index` had, recomputed from the recorded outputs
        (for its compensation; `inputs` may be called only once per step)."""
        spec = self._spec
        if spec.mode is ExecutionMode.Pipeline:
            upstream: Mapping[str, Any] = self._direct(index)
        elif spec.deps[index]:
            upstream = self._from_ancestors(index)
        else:
            upstream = self._initial
        return self._with_parameters(index, upstream)

    def _with_parameters(self, index: int, upstream: Mapping[str, Any]) -> Mapping[str, Any]:
        parameters = self._spec.steps[index].parameters
        return ChainMap(parameters, upstream) if parameters else upstream  # type: ignore[arg-type]

    def _from_ancestors(self, index: int) -> immutables.Map[str, Any]:
        """``initial_data`` and every ancestor's output, in topological order."""
        return self._initial.update(self._merge(self._ancestors(index)))

    def _upstream(self, index: int) -> immutables.Map[str, Any]:
        deps = self._spec.deps[index]
        if not deps:
            return self._initial
        if len(deps) == 1:
            output = self._outputs[deps[0]]
            base = self._passed_on[deps[0]]
            upstream = base.update(output) if output else base
        else:
            upstream = self._from_ancestors(index)
        for dep in deps:
            self._unclaimed[dep] -= 1
            if not self._unclaimed[dep]:
                self._passed_on.pop(dep, None)
        return upstream

    def _ancestors(self, index: int) -> list[int]:
        deps = self._spec.deps
        seen: set[int] = set()
        stack = list(deps[index])
        while stack:
            step = stack.pop()
            if step not in seen:
                seen.add(step)
                stack.extend(deps[step])
        return sorted(seen, key=self._spec.position.__getitem__)

    def _merge(self, steps: list[int]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for step in steps:
            output = self._outputs[step]
            if output:
                merged.update(output)
        return merged

    def _direct(self, index: int) -> Mapping[str, Any]:
        deps = self._spec.deps[index]
        if not deps:
            return self._initial
        return self._merge(sorted(deps, key=self._spec.position.__getitem__))

    def final_data(self) -> dict[str, Any]:
        """``initial_data`` plus every completed step's output in topological order;
        in Pipeline mode, the merged output of the sink steps."""
        spec = self._spec
        if spec.mode is ExecutionMode.Pipeline:
            return self._merge([i for i in spec.order if not spec.dependents[i]])
        return {**self._initial, **self._merge(list(spec.order))}
