"""Benchmark qtforge against a bare anyio baseline measured in the same run.

    .venv/bin/python benchmarks/run.py            # full run (a few minutes), Markdown table
    .venv/bin/python benchmarks/run.py --quick    # small sizes, a smoke run (< 30 s)
    .venv/bin/python benchmarks/run.py --json     # the same as JSON, with raw samples
    .venv/bin/python benchmarks/run.py --backend trio
    .venv/bin/python benchmarks/run.py --only async,facade

See benchmarks/README.md for what each workload measures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version

from _measure import Settings, facade, memory, progress, registration, workloads
from _report import Row, as_json, markdown
from _workloads import chain, fan, independent, sleepers

GROUPS = ("async", "sync", "facade", "memory", "registration")


@dataclass(frozen=True)
class Sizes:
    chain: int
    fan: int
    independent: int
    sleepers: int
    memory: tuple[int, ...]
    registration: int
    facade_calls: int
    rounds: int
    warmup: int


FULL = Sizes(1_000, 1_000, 10_000, 200, (10_000, 100_000), 100_000, 1_000, rounds=5, warmup=1)
QUICK = Sizes(100, 100, 1_000, 200, (1_000, 5_000), 10_000, 200, rounds=2, warmup=1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 5; --quick 2)")
    parser.add_argument(
        "--thread-limit",
        type=int,
        default=32,
        help="qtforge's thread_limit and the baseline's limiter (W4 sync: at least its size)",
    )
    parser.add_argument(
        "--event-buffer",
        type=int,
        help="the events subscriber's buffer (default: qtforge's, 10,000 events)",
    )
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups to run, of: {', '.join(GROUPS)}",
    )
    args = parser.parse_args(argv)
    args.only = [group.strip() for group in args.only.split(",") if group.strip()]
    unknown = set(args.only) - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s) for --only: {', '.join(sorted(unknown))}")
    return args


def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, object]]:
    sizes = QUICK if args.quick else FULL
    settings = Settings(
        backend=args.backend,
        rounds=args.rounds or sizes.rounds,
        warmup=sizes.warmup,
        thread_limit=args.thread_limit,
        event_buffer=args.event_buffer,
    )
    shapes = [
        chain(sizes.chain),
        fan(sizes.fan),
        independent(sizes.independent),
        sleepers(sizes.sleepers),
    ]
    rows: list[Row] = []
    for group in GROUPS:
        if group not in args.only:
            continue
        progress(f"{group}:")
        if group in ("async", "sync"):
            rows += workloads(shapes, sync=group == "sync", settings=settings)
        elif group == "facade":
            rows += facade(sizes.facade_calls, steps=10, settings=settings)
        elif group == "memory":
            rows += memory(sizes.memory, settings)
        else:
            rows += registration(sizes.registration, settings)
    w4_threads = max(settings.thread_limit, sizes.sleepers)
    header: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", *sys.argv]),
        "backend": settings.backend,
        "python": platform.python_version(),
        "anyio": version("anyio"),
        "qtforge": version("qtforge"),
        "cpus": os.cpu_count(),
        "rounds": f"{settings.rounds} measured (+{settings.warmup} warm-up), interleaved",
        "execution mode": settings.mode.name,
        "thread_limit": f"{settings.thread_limit} (W4 sync: {w4_threads})",
        "event buffer": settings.event_buffer or "qtforge's default",
    }
    return rows, header


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rows, header = run(args)
    print(as_json(rows, header) if args.json else markdown(rows, header))


if __name__ == "__main__":
    main()
