"""The benchmark workloads: graph shapes, the plugin whose methods the steps call, and
the qtforge `Workflow` for each shape.

A shape is a dependency graph by index (``deps[i]`` are the steps step ``i`` waits for),
so qtforge and the bare anyio baseline run exactly the same graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from qtforge import PluginManager
from qtforge.orchestration import ExecutionMode, Workflow, WorkflowStep

NAP = 0.05  # seconds each W4 step sleeps
PLUGIN_ID = "bench"


@dataclass(frozen=True)
class Shape:
    """One workload's graph.

    Attributes:
        key: ``"W1"`` .. ``"W4"``.
        title: What the graph is, for the report.
        deps: For each step index, the indices of its dependencies.
        kind: Which plugin method every step calls: ``"inc"`` (takes ``value``, returns
            ``{"value": value + 1}``), ``"noop"`` or ``"nap"`` (sleeps `NAP` seconds).
    """

    key: str
    title: str
    deps: tuple[tuple[int, ...], ...]
    kind: str

    @property
    def steps(self) -> int:
        return len(self.deps)

    @property
    def initial_data(self) -> dict[str, Any] | None:
        return {"value": 0} if self.kind == "inc" else None


def chain(n: int) -> Shape:
    """W1: ``n`` steps in a line, each given its predecessor's output."""
    deps = ((), *((i - 1,) for i in range(1, n)))
    return Shape("W1", f"chain of {n:,}, data passed step to step", deps, "inc")


def fan(width: int) -> Shape:
    """W2: one root, `width` steps that depend on it, one final step that joins them."""
    middle = tuple((0,) for _ in range(width))
    deps = ((), *middle, tuple(range(1, width + 1)))
    return Shape("W2", f"fan-out/fan-in 1 → {width:,} → 1", deps, "noop")


def independent(n: int) -> Shape:
    """W3: `n` steps with no dependencies."""
    return Shape("W3", f"{n:,} independent steps", ((),) * n, "noop")


def sleepers(n: int) -> Shape:
    """W4: `n` independent steps that each sleep `NAP` seconds."""
    return Shape("W4", f"{n:,} steps sleeping {NAP * 1000:g} ms each", ((),) * n, "nap")


class BenchPlugin:
    """The plugin every benchmark step calls: no-op work, async and sync."""

    plugin_id = PLUGIN_ID

    async def inc(self, value: int) -> dict[str, int]:
        return {"value": value + 1}

    async def noop(self) -> None:
        return None

    async def nap(self) -> None:
        await anyio.sleep(NAP)

    def inc_sync(self, value: int) -> dict[str, int]:
        return {"value": value + 1}

    def noop_sync(self) -> None:
        return None

    def nap_sync(self) -> None:
        time.sleep(NAP)


def method_name(shape: Shape, sync: bool) -> str:
    """The `BenchPlugin` method the steps of `shape` call."""
    return f"{shape.kind}_sync" if sync else shape.kind


def plugin_manager() -> PluginManager:
    """A manager holding only `BenchPlugin` (no entry-point discovery)."""
    manager = PluginManager()
    manager.register_plugin(BenchPlugin()).value()
    return manager


def build_workflow(
    shape: Shape,
    *,
    sync: bool = False,
    mode: ExecutionMode = ExecutionMode.Parallel,
    workflow_id: str | None = None,
    **step_options: Any,
) -> Workflow:
    """The qtforge workflow for `shape`; its steps have the default settings (a 60 s
    timeout, no retries, critical) unless `step_options` say otherwise."""
    method = method_name(shape, sync)
    workflow = Workflow(workflow_id or f"{shape.key}-{method}", shape.title)
    workflow.set_execution_mode(mode)
    for i, deps in enumerate(shape.deps):
        workflow.add_step(
            WorkflowStep(
                f"s{i}",
                PLUGIN_ID,
                method,
                dependencies=[f"s{d}" for d in deps],
                **step_options,
            )
        )
    return workflow
