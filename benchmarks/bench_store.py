"""Per-step cost of the execution store on W1 (the 1,000-step chain, async steps).

Runs the chain with no store (the default), a `MemoryStore`, and a `SQLiteStore` file
with ``synchronous=NORMAL`` and ``FULL``; prints the median µs per step of each and the
store's extra cost per step over the default. Usage::

    .venv/bin/python benchmarks/bench_store.py [--rounds N] [--backend trio]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from _workloads import build_workflow, chain, plugin_manager

from qtforge.orchestration import AsyncPluginOrchestrator
from qtforge.store import MemoryStore, SQLiteStore

STEPS = 1000


async def one_run(make_store: Any) -> float:
    shape = chain(STEPS)
    async with AsyncPluginOrchestrator(plugin_manager(), store=make_store()) as orchestrator:
        orchestrator.register_workflow(build_workflow(shape)).value()
        began = time.perf_counter()
        eid = (await orchestrator.execute_workflow("W1-inc", {"value": 0})).value()
        elapsed = time.perf_counter() - began
        results = (await orchestrator.get_workflow_results(eid)).value()
        assert results["data"] == {"value": STEPS}, results["status"]
    return elapsed / STEPS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="asyncio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10_000))
        variants = {
            "no store (default)": lambda: None,
            "MemoryStore": MemoryStore,
            "SQLiteStore NORMAL": lambda: SQLiteStore(Path(tmp) / f"n{next(counter)}.db"),
            "SQLiteStore FULL": lambda: SQLiteStore(
                Path(tmp) / f"f{next(counter)}.db", synchronous="FULL"
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds + 1):  # the first is a warm-up
            for name, make in variants.items():
                gc.collect()
                value = anyio.run(one_run, make, backend=args.backend)
                if round_:
                    samples[name].append(value)
    base = statistics.median(samples["no store (default)"])
    print(f"W1 chain of {STEPS:,} async steps, backend {args.backend}, {args.rounds} rounds")
    print("| store | µs/step | store cost µs/step |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median - base:+.1f} |")


if __name__ == "__main__":
    main()
