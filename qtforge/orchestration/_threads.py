"""Running a plain (sync) plugin method in a worker thread.

A thread cannot be killed. When a sync step's attempt times out or is cancelled, the
engine sets the step's cancellation flag (`StepContext.cancelled`) and stops waiting
for the thread at once: the step is reported without it, and whatever the thread
returns later is discarded. The thread keeps its token of the engine's thread limiter
until it really ends, so abandoned threads still count against ``thread_limit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio

__all__ = ["event_waker", "run_in_thread"]

# The threads themselves are bounded by the engine's own limiter; anyio's limiter for
# the call only has to stay out of the way (trio's would otherwise also count threads).
_UNBOUNDED = 1_000_000


class _Borrow:
    """Who returns the limiter token: the waiting task, or the thread it abandoned."""

    __slots__ = ("lock", "release_soon", "state")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.state = "pending"  # -> running -> done, then dropped or abandoned
        self.release_soon: Callable[..., object] | None = None


def _loop_callback_scheduler() -> Callable[..., object]:
    """Schedules ``callback(*args)`` on the running event loop from any thread, without
    waiting (a blocking ``from_thread`` call could wait forever on a stopping loop)."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop().call_soon_threadsafe
    import trio

    return trio.lowlevel.current_trio_token().run_sync_soon


def event_waker(event: anyio.Event) -> Callable[[], None]:
    """A function any thread may call, without blocking, to set `event` on the running
    event loop; once that loop has ended it does nothing (no one waits any more)."""
    schedule = _loop_callback_scheduler()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed (trio: RunFinishedError)
            schedule(event.set)

    return wake


async def run_in_thread(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    limiter: anyio.CapacityLimiter,
    on_abandon: Callable[[], None],
) -> Any:
    """Call ``fn(*args, **kwargs)`` in a worker thread holding a `limiter` token.

    Checkpoint. On cancellation, `on_abandon` runs (it sets the step's cancellation
    flag), the cancellation propagates at once, and the thread, if it already started,
    returns the token when it finishes.
    """
    borrow = _Borrow()
    await limiter.acquire_on_behalf_of(borrow)

    def work() -> Any:
        with borrow.lock:
            if borrow.state == "dropped":
                return None
            borrow.state = "running"
        try:
            return fn(*args, **kwargs)
        finally:
            with borrow.lock:
                abandoned = borrow.state == "abandoned"
                borrow.state = "done"
            if abandoned:
                assert borrow.release_soon is not None
                with contextlib.suppress(RuntimeError):  # the loop is gone, its limiter too
                    borrow.release_soon(limiter.release_on_behalf_of, borrow)

    try:
        return await anyio.to_thread.run_sync(
            work, abandon_on_cancel=True, limiter=_thread_call_limiter()
        )
    except anyio.get_cancelled_exc_class():
        on_abandon()
        raise
    finally:
        with borrow.lock:
            thread_releases = borrow.state == "running"
            if thread_releases:
                borrow.release_soon = _loop_callback_scheduler()
            borrow.state = "abandoned" if thread_releases else "dropped"
        if not thread_releases:
            limiter.release_on_behalf_of(borrow)


_call_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "qtforge_thread_call_limiter"
)


def _thread_call_limiter() -> anyio.CapacityLimiter:
    try:
        return _call_limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_UNBOUNDED)
        _call_limiter.set(limiter)
        return limiter
