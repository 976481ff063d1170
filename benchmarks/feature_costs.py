"""What each armed feature costs per step: qtforge with and without the events
subscriber and the per-step timeout, against the bare anyio baseline, same rounds.

    .venv/bin/python benchmarks/feature_costs.py            # W1 and W3, async steps
    .venv/bin/python benchmarks/feature_costs.py --quick --backend trio

Status tracking and data flow cannot be turned off, so "qtforge, nothing armed" is
their cost plus the scheduler's.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import sys
from collections.abc import Callable
from typing import Any

import anyio
from _runners import Run, run_bare, run_qtforge
from _workloads import Shape, chain, independent

CONFIGS: dict[str, Callable[..., Any]] = {
    "bare anyio": run_bare,
    "qtforge, every feature armed": run_qtforge,
    "qtforge, no events subscriber": functools.partial(run_qtforge, subscribe=False),
    "qtforge, no step timeout": functools.partial(run_qtforge, step_options={"timeout": None}),
    "qtforge, nothing armed": functools.partial(
        run_qtforge, subscribe=False, step_options={"timeout": None}
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 5; --quick 2)")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    return parser.parse_args(argv)


def measure(shape: Shape, rounds: int, backend: str) -> dict[str, list[float]]:
    """Seconds per run of each configuration, over one warm-up and `rounds` rounds;
    the configurations take turns going first."""
    names = list(CONFIGS)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(1 + rounds):
        print(f"  {shape.key} round {round_ + 1}", file=sys.stderr, flush=True)
        turn = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in turn:
            gc.collect()
            runner = functools.partial(CONFIGS[name], shape, sync=False, thread_limit=32)
            run: Run = anyio.run(runner, backend=backend)
            if round_:
                seconds[name].append(run.seconds)
    return seconds


def table(shape: Shape, seconds: dict[str, list[float]]) -> list[str]:
    bare = seconds["bare anyio"]
    armed = statistics.median(seconds["qtforge, every feature armed"])
    lines = [
        f"\n{shape.key} {shape.title}\n",
        "| configuration | µs/step | / bare (paired median) | armed minus this, µs/step |",
        "|---|---:|---:|---:|",
    ]
    for name, runs in seconds.items():
        ratio = statistics.median(r / b for r, b in zip(runs, bare, strict=True))
        per_step = 1e6 * statistics.median(runs) / shape.steps
        saved = 1e6 * (armed - statistics.median(runs)) / shape.steps
        lines.append(f"| {name} | {per_step:.1f} | {ratio:.2f} | {saved:+.1f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rounds = args.rounds or (2 if args.quick else 5)
    shapes = [chain(100), independent(1_000)] if args.quick else [chain(1_000), independent(10_000)]
    lines = [f"backend {args.backend}, {rounds} rounds (+1 warm-up), ExecutionMode.Parallel"]
    for shape in shapes:
        lines += table(shape, measure(shape, rounds, args.backend))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
