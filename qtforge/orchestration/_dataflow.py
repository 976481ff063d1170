"""Data flow between steps (SPEC 4), without quadratic copying.

A step's input is ``initial_data``, then the outputs of its completed transitive
upstream steps in topological order, then its own parameters; later keys win. In
Pipeline mode it is the merged output of its direct dependencies only.

Materialising that mapping naively costs O(upstream) per step, so a 1,000-step chain
would copy O(n²) keys. Instead, a step with a single dependency inherits that
dependency's mapping: it takes it over and updates it in place when it is the only
dependent (a chain: O(output) per step), and copies it otherwise (a fan-out). Only
joins walk their ancestors. Parameters are overlaid with a `ChainMap`, never copied in.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._model import ExecutionMode
from ._spec import WorkflowSpec

__all__ = ["DataFlow", "contribution"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def contribution(step_id: str, result: object) -> Mapping[str, Any]:
    """What a step's return value adds to its dependents' input (SPEC 4)."""
    if result is None:
        return _EMPTY
    if isinstance(result, Mapping):
        return result
    return {step_id: result}


class DataFlow:
    """Inputs and final data of one execution; the scheduler feeds it outputs."""

    __slots__ = ("_inherited", "_initial", "_outputs", "_owned", "_spec", "_unclaimed")

    def __init__(self, spec: WorkflowSpec, initial: Mapping[str, Any]) -> None:
        self._spec = spec
        self._initial = initial
        self._outputs: list[Mapping[str, Any] | None] = [None] * len(spec.steps)
        # Per step: the merged upstream data it hands on, whether this execution owns
        # that dict (may update it in place), and how many dependents still need it.
        self._inherited: dict[int, Mapping[str, Any]] = {}
        self._owned: set[int] = set()
        self._unclaimed = [len(d) for d in spec.dependents]

    def record(self, index: int, output: Mapping[str, Any]) -> None:
        """Step `index` completed with `output` (see `contribution`)."""
        self._outputs[index] = output

    def inputs(self, index: int) -> Mapping[str, Any]:
        """The input mapping of step `index`; call once, when it is about to run."""
        spec = self._spec
        if spec.mode is ExecutionMode.Pipeline:
            upstream = self._direct(index)
        else:
            upstream = self._upstream(index)
            if spec.dependents[index]:
                self._inherited[index] = upstream
        parameters = spec.steps[index].parameters
        return ChainMap(parameters, upstream) if parameters else upstream  # type: ignore[arg-type]

    def _upstream(self, index: int) -> Mapping[str, Any]:
        deps = self._spec.deps[index]
        if not deps:
            return self._initial
        if len(deps) > 1:
            for dep in deps:
                self._claimed(dep)
            self._owned.add(index)
            return self._merge(self._ancestors(index))
        (dep,) = deps
        base = self._inherited.get(dep, self._initial)
        output = self._outputs[dep] or _EMPTY
        last = self._claimed(dep)
        if last and dep in self._owned:
            self._owned.discard(dep)
            merged = base
        elif output:
            merged = dict(base)
        else:
            return base  # nothing to add: share it, read-only
        merged.update(output)  # type: ignore[attr-defined]
        self._owned.add(index)
        return merged

    def _claimed(self, dep: int) -> bool:
        """One more dependent of `dep` has taken its data; True for the last one."""
        self._unclaimed[dep] -= 1
        if self._unclaimed[dep]:
            return False
        self._inherited.pop(dep, None)
        return True

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
        merged = dict(self._initial)
        for step in steps:
            output = self._outputs[step]
            if output:
                merged.update(output)
        return merged

    def _direct(self, index: int) -> Mapping[str, Any]:
        deps = self._spec.deps[index]
        if not deps:
            return self._initial
        merged: dict[str, Any] = {}
        for dep in sorted(deps, key=self._spec.position.__getitem__):
            output = self._outputs[dep]
            if output:
                merged.update(output)
        return merged

    def final_data(self) -> dict[str, Any]:
        """``initial_data`` plus every completed step's output in topological order;
        in Pipeline mode, the merged output of the sink steps."""
        spec = self._spec
        if spec.mode is ExecutionMode.Pipeline:
            merged: dict[str, Any] = {}
            for index in spec.order:
                output = self._outputs[index]
                if output and not spec.dependents[index]:
                    merged.update(output)
            return merged
        return self._merge(list(spec.order))
