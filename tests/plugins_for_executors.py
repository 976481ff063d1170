"""Plugins for the executor tests, importable by worker processes.

Worker processes get copies of a plugin, so nothing here keeps state in the plugin: a
step that must remember something across attempts (or tell the test its process id)
writes a file named by its parameters. The module imports little, so that a fresh
worker process starts fast.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from qtforge.orchestration import StepContext

__all__ = ["Locked", "Work", "local_dask_client"]


class Work:
    """Small steps that behave the same on every executor."""

    plugin_id = "work"

    def inc(self, value: int = 0) -> dict[str, int]:
        return {"value": value + 1}

    async def ainc(self, value: int = 0) -> dict[str, int]:
        await anyio.lowlevel.checkpoint()
        return {"value": value + 1}

    def where(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "thread": threading.get_ident()}

    async def awhere(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "thread": threading.get_ident()}

    def boom(self) -> None:
        raise ValueError("boom")

    def flaky(self, counter: str, failures: int) -> dict[str, int]:
        """Fail the first `failures` attempts (counted in the file `counter`)."""
        path = Path(counter)
        attempt = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(attempt))
        if attempt <= failures:
            raise ConnectionError(f"attempt {attempt} failed")
        return {"attempts_seen": attempt}

    def sleep(self, seconds: float, marker: str = "") -> dict[str, float]:
        """Write this process's id to `marker`, then sleep, and write the marker's
        ``.done`` file at the end, so a test can tell whether the call ran to its end."""
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(seconds)
        if marker:
            Path(f"{marker}.done").write_text("done")
        return {"slept": seconds}

    async def asleep(self, seconds: float, marker: str = "") -> dict[str, float]:
        if marker:
            await anyio.Path(marker).write_text(str(os.getpid()))
        await anyio.sleep(seconds)
        return {"slept": seconds}

    def context(self, context: StepContext) -> dict[str, Any]:
        context.report_progress(0.5)
        return {
            "seen": {
                "execution_id": context.execution_id,
                "workflow_id": context.workflow_id,
                "step_id": context.step_id,
                "attempt": context.attempt,
                "inputs": dict(context.inputs),
                "cancelled": context.cancelled,
            }
        }

    def die_once(self, marker: str) -> dict[str, int]:
        """Kill the process running it, the first time (the file `marker` remembers)."""
        path = Path(marker)
        if not path.exists():
            path.write_text(str(os.getpid()))
            os._exit(3)
        return {"pid": os.getpid()}

    def lock(self) -> threading.Lock:
        return threading.Lock()

    def take(self, thing: object) -> dict[str, str]:
        return {"took": type(thing).__name__}


class Locked(Work):
    """A plugin that cannot be pickled: it holds a lock."""

    plugin_id = "locked"

    def __init__(self) -> None:
        self.guard = threading.Lock()


@contextlib.contextmanager
def local_dask_client(**options: Any) -> Iterator[Any]:
    """A synchronous Dask client of a fresh `LocalCluster`, closed at the end."""
    import distributed

    settings = {"dashboard_address": ":0", "n_workers": 1, "threads_per_worker": 8}
    with (
        distributed.LocalCluster(**{**settings, **options}) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client
