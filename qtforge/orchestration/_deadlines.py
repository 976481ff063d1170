"""Step timeouts without a timer per attempt.

Entering a cancel scope with a deadline costs several µs (a timer handle each time, and
on asyncio a heap of them), which a scheduler running thousands of short steps would pay
for every attempt. Instead each worker runs its steps in a `Lane`: one plain cancel
scope that lasts as long as no attempt times out. Each attempt registers its deadline
here, in a heap, and one watchdog task per execution sleeps until the earliest one. If
the attempt is still running then, the watchdog marks the lane timed out and cancels
its scope; the worker settles the attempt as a timeout and opens a fresh scope.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any, NoReturn

import anyio

__all__ = ["Deadlines", "Lane"]

_COMPACT_AT = 1024  # heap entries before stale ones are swept out


class Lane:
    """A worker's cancel scope and the attempt it is running."""

    __slots__ = ("attempt", "index", "inputs", "key", "scope", "timed_out")

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.key = 0  # the armed attempt's deadline entry; 0 when none is armed
        self.timed_out = False
        self.index: int | None = None  # the step in progress, if any
        self.attempt = 0
        self.inputs: Any = None


class Deadlines:
    """The attempts' deadlines of one execution, and the watchdog that enforces them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Lane]] = []
        self._serial = 0
        self._compact_at = _COMPACT_AT
        self._due = math.inf  # when the watchdog wakes next
        self._wakeup: anyio.Event | None = None

    def arm(self, lane: Lane, deadline: float) -> None:
        """The lane's current attempt must end by `deadline`; reset ``lane.key`` to 0
        (disarm it) when the attempt ends in time."""
        self._serial += 1
        lane.key = self._serial
        heapq.heappush(self._heap, (deadline, self._serial, lane))
        if deadline < self._due and self._wakeup is not None:
            self._wakeup.set()
        if len(self._heap) >= self._compact_at:
            self._heap = [entry for entry in self._heap if entry[2].key == entry[1]]
            heapq.heapify(self._heap)
            self._compact_at = max(_COMPACT_AT, 2 * len(self._heap))

    async def watch(self) -> NoReturn:
        """Cancel each lane whose armed attempt outlives its deadline; runs until cancelled."""
        while True:
            now = self._clock()
            heap = self._heap
            while heap and heap[0][0] <= now:
                _, key, lane = heapq.heappop(heap)
                if lane.key == key:
                    assert lane.scope is not None
                    lane.key = 0
                    lane.timed_out = True
                    lane.scope.cancel()
            self._due = heap[0][0] if heap else math.inf
            self._wakeup = wakeup = anyio.Event()
            with anyio.CancelScope(deadline=self._due):
                await wakeup.wait()
