"""`ProcessExecutor`: steps in worker processes, for CPU-bound Python code.

The executor keeps its own pool of worker processes (``_process_worker.py``), so that
it owns their whole life: a worker is started with cancellation shielded (a step
cancelled while its worker starts must not leave a half-started process behind), a
worker whose call is cancelled or timed out is killed at once, a worker that dies is
reported with its exit status, and `ProcessExecutor.aclose` stops them all.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from typing import Any, cast

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.buffered import BufferedByteReceiveStream

from .._errors import PluginError, PluginErrorCode
from ._executors import Executor, StepCall
from ._process_worker import BOOT, frame
from ._shipping import pack, unpack

__all__ = ["ProcessExecutor"]

_START_TIMEOUT = 60.0  # seconds a new worker may take to import what it needs
_STOP_GRACE = 2.0  # seconds an idle worker may take to exit once its stdin is closed
_HEADER_SIZE = 8


class WorkerDied(Exception):
    """A worker process ended while the engine was talking to it."""


class _Worker:
    """One worker process and the two ends of its pipes."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.requests = cast(anyio.abc.ByteSendStream, process.stdin)
        self.replies = BufferedByteReceiveStream(cast(anyio.abc.ByteReceiveStream, process.stdout))

    async def call(self, payload: bytes) -> bytes:
        """Send one frame and receive the reply's. Raises `WorkerDied` if the worker
        ends first."""
        try:
            await self.requests.send(frame(payload))
            header = await self.replies.receive_exactly(_HEADER_SIZE)
            return await self.replies.receive_exactly(int.from_bytes(header, "big"))
        except (anyio.BrokenResourceError, anyio.IncompleteRead, anyio.EndOfStream) as exc:
            raise WorkerDied(await self.exit_status()) from exc

    async def exit_status(self) -> str:
        """How the process ended, in words (waiting a moment for it to end)."""
        with anyio.move_on_after(1.0):
            await self.process.wait()
        code = self.process.returncode
        if code is None:
            return "it closed its pipe"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    async def kill(self) -> None:
        """Kill the process and reap it; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.aclose()

    async def stop(self) -> None:
        """Let an idle worker exit (end of its input), or kill it if it lingers."""
        with anyio.CancelScope(shield=True):
            await self.requests.aclose()
            with anyio.move_on_after(_STOP_GRACE):
                await self.process.wait()
            await self.kill()


class ProcessExecutor(Executor):
    """Runs calls in worker processes, so CPU-bound Python steps run in parallel.

    Workers are started on demand, up to `max_workers`, and reused; `aclose` (which the
    orchestrator calls when it closes) stops them. A new worker runs with the engine's
    ``sys.path`` and imports the modules of what it runs, and the script being run (as
    ``__mp_main__``, as `multiprocessing` does: keep its top level behind
    ``if __name__ == "__main__":``). Starting one costs about a quarter of a second,
    counted in the first step's timeout; a step cancelled while its worker starts is
    stopped as soon as the worker is up, so that no half-started process is left.

    Every call sends the plugin object and the step's arguments to the worker with
    the standard `pickle` module, and the result back: plugins and values must be
    picklable, and their classes importable (defined at a module's top level). A plugin
    changed by a call changes only its copy in the worker. ``initialize()`` and
    ``shutdown()`` hooks run in the orchestrator's process. An ``async def`` method runs
    in the worker on an asyncio event loop of its own. What a worker prints goes to the
    orchestrator's stderr. Pickling happens on the engine's event loop: keep step inputs
    moderate.

    A call that times out or is cancelled is really stopped: its worker process is
    killed, and a new one is started for the next call. A worker that dies (killed,
    crashed, out of memory) fails its step, which is retried as the step allows.

    Args:
        max_workers: Most worker processes, hence calls running at once (default: the
            number of CPUs).
    """

    interrupts_running = True

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a positive int or None, got {max_workers!r}")
        self.max_workers = max_workers or os.cpu_count() or 1
        self._limiter: anyio.CapacityLimiter | None = None
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()

    async def run(self, call: StepCall) -> Any:
        payload = pack(call, pickle.dumps, "process")
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_workers)
        async with self._limiter:
            worker = await self._take(call)
            try:
                reply = await worker.call(payload)
            except BaseException as exc:
                self._workers.discard(worker)
                await worker.kill()
                if isinstance(exc, WorkerDied):
                    raise PluginError(
                        PluginErrorCode.ExecutionFailed,
                        f"{call.where}: its worker process died before sending a result "
                        f"({exc}); a new one is started for the next call",
                    ) from exc
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    call.cancelled()
                raise
            self._idle.append(worker)
        return unpack(reply, call, "process")

    async def _take(self, call: StepCall) -> _Worker:
        """An idle worker that is still alive, or a new one."""
        while self._idle:
            worker = self._idle.pop()
            if worker.process.returncode is None:
                return worker
            self._workers.discard(worker)
            await worker.kill()
        with anyio.CancelScope(shield=True):
            worker = await self._start(call)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled while it started?
        except anyio.get_cancelled_exc_class():
            self._idle.append(worker)  # then it serves the next call
            raise
        return worker

    async def _start(self, call: StepCall) -> _Worker:
        main = getattr(sys.modules["__main__"], "__file__", None) or ""
        process = await anyio.open_process(
            [sys.executable, "-u", "-c", BOOT, main, *sys.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
        )
        worker = _Worker(process)
        self._workers.add(worker)
        try:
            with anyio.fail_after(_START_TIMEOUT):
                header = await worker.replies.receive_exactly(_HEADER_SIZE)
                problem = pickle.loads(
                    await worker.replies.receive_exactly(int.from_bytes(header, "big"))
                )
        except (TimeoutError, anyio.IncompleteRead, anyio.EndOfStream) as exc:
            problem = f"{type(exc).__name__}: it did not start ({await worker.exit_status()})"
        if problem is not None:
            self._workers.discard(worker)
            await worker.kill()
            raise PluginError(
                PluginErrorCode.ResourceUnavailable,
                f"{call.where}: the process executor could not start a worker process: {problem}",
            )
        return worker

    async def aclose(self) -> None:
        """Stop every worker process. Checkpoint; shielded from cancellation."""
        idle, self._idle = self._idle, []
        workers, self._workers = self._workers, set()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as group:
                for worker in workers:
                    group.start_soon(worker.stop if worker in idle else worker.kill)
