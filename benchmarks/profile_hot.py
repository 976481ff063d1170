"""Profile qtforge's hot path on one workload and print where each step's time goes.

    .venv/bin/python benchmarks/profile_hot.py W1              # cProfile, top 30 by own time
    .venv/bin/python benchmarks/profile_hot.py W3 --tool pyinstrument
    .venv/bin/python benchmarks/profile_hot.py W3 --side bare  # the baseline, for contrast

cProfile inflates the cost of small functions; pyinstrument (``pip install
pyinstrument``) samples, so its proportions are closer to the truth. Either way the
profile covers only the executions (the orchestrator is set up before profiling).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio
from _runners import run_bare, run_qtforge
from _workloads import Shape, chain, fan, independent, sleepers

SHAPES: dict[str, Callable[[int], Shape]] = {
    "W1": chain,
    "W2": fan,
    "W3": independent,
    "W4": sleepers,
}
DEFAULT_STEPS = {"W1": 1_000, "W2": 1_000, "W3": 10_000, "W4": 200}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, help="size of the workload (default: run.py's)")
    parser.add_argument("--repeat", type=int, default=5, help="executions profiled")
    parser.add_argument("--sync", action="store_true", help="plain def steps (worker threads)")
    parser.add_argument("--side", choices=("qtforge", "bare"), default="qtforge")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--tool", choices=("cprofile", "pyinstrument"), default="cprofile")
    parser.add_argument("--top", type=int, default=30, help="functions listed (cProfile)")
    return parser.parse_args(argv)


class _Profiling:
    """A context manager that runs the chosen profiler while it is entered (the timed
    section of each execution); the sessions add up."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        if tool == "pyinstrument":
            try:
                from pyinstrument import Profiler
            except ImportError:
                sys.exit("pyinstrument is not installed: .venv/bin/pip install pyinstrument")
            self.profiler: Any = Profiler(interval=0.0001, async_mode="disabled")
        else:
            self.profiler = cProfile.Profile()

    def __enter__(self) -> None:
        (self.profiler.start if self.tool == "pyinstrument" else self.profiler.enable)()

    def __exit__(self, *exc_info: object) -> None:
        (self.profiler.stop if self.tool == "pyinstrument" else self.profiler.disable)()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    shape = SHAPES[args.workload](args.steps or DEFAULT_STEPS[args.workload])
    runner = run_qtforge if args.side == "qtforge" else run_bare

    async def executions(around: AbstractContextManager[object] | None) -> None:
        for _ in range(args.repeat):
            await runner(shape, sync=args.sync, thread_limit=32, around=around)

    anyio.run(executions, None, backend=args.backend)  # warm-up, unprofiled
    profiling = _Profiling(args.tool)
    anyio.run(executions, profiling, backend=args.backend)
    print(f"{args.side} {shape.key} ({shape.title}), {args.repeat} executions, {args.backend}")
    if args.tool == "pyinstrument":
        print(profiling.profiler.output_text(unicode=True, color=False))
    else:
        _print_stats(pstats.Stats(profiling.profiler), shape.steps * args.repeat, args.top)


def _print_stats(stats: pstats.Stats, steps: int, top: int) -> None:
    total = stats.total_tt
    print(f"total {total:.3f} s under cProfile = {1e6 * total / steps:.1f} µs/step\n")
    print(f"{'own µs/step':>11} {'cum µs/step':>11} {'calls/step':>10}  function")
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)
    for (filename, line, name), (_, calls, own, cumulative, _) in rows[:top]:
        print(
            f"{1e6 * own / steps:11.2f} {1e6 * cumulative / steps:11.2f} "
            f"{calls / steps:10.2f}  {_short(filename)}:{line}({name})"
        )


def _short(filename: str) -> str:
    for marker in ("/qtforge/", "/anyio/", "/asyncio/", "/trio/", "/attrs/", "/benchmarks/"):
        if marker in filename:
            return marker.strip("/") + "/" + filename.split(marker, 1)[1]
    return filename


if __name__ == "__main__":
    main()
