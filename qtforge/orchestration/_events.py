"""Execution events, and the hub that fans them out to subscribers.

Every event is an immutable attrs object with a `kind` string. Subscribers read from
their own bounded buffer, so a slow consumer never stalls the engine: when a buffer is
full the oldest event in it is dropped, and the consumer receives an `EventsDropped`
event, carrying the number lost, before the next event it gets.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import ClassVar, Self

import anyio
import anyio.lowlevel
import attrs

__all__ = [
    "CompensationCompleted",
    "CompensationFailed",
    "CompensationStarted",
    "Event",
    "EventHub",
    "EventStream",
    "EventsDropped",
    "Progress",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepFinished",
    "StepRetrying",
    "StepSkipped",
    "StepStarted",
    "WorkflowCancelled",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowPaused",
    "WorkflowResumed",
    "WorkflowStarted",
]


@attrs.frozen(kw_only=True)
class Event:
    """What every event carries; `timestamp` is seconds since the epoch."""

    kind: ClassVar[str] = "event"
    execution_id: str
    workflow_id: str
    timestamp: float
    step_id: str | None = None


@attrs.frozen(kw_only=True)
class WorkflowStarted(Event):
    kind: ClassVar[str] = "workflow.started"
    total_steps: int


@attrs.frozen(kw_only=True)
class WorkflowCompleted(Event):
    kind: ClassVar[str] = "workflow.completed"
    duration_ms: float


@attrs.frozen(kw_only=True)
class WorkflowFailed(Event):
    kind: ClassVar[str] = "workflow.failed"
    duration_ms: float
    error: str
    error_code: str


@attrs.frozen(kw_only=True)
class WorkflowCancelled(Event):
    kind: ClassVar[str] = "workflow.cancelled"
    duration_ms: float


@attrs.frozen(kw_only=True)
class WorkflowPaused(Event):
    """`pause_workflow` took effect: no step runs, and none starts until resumed."""

    kind: ClassVar[str] = "workflow.paused"


@attrs.frozen(kw_only=True)
class WorkflowResumed(Event):
    """A paused execution goes on (`resume_workflow`)."""

    kind: ClassVar[str] = "workflow.resumed"


@attrs.frozen(kw_only=True)
class StepStarted(Event):
    kind: ClassVar[str] = "step.started"
    attempt: int


@attrs.frozen(kw_only=True)
class StepFinished(Event):
    """Base of the events that end a step; `progress` is the workflow's, in percent,
    counting this step as finished."""

    progress: float


@attrs.frozen(kw_only=True)
class StepCompleted(StepFinished):
    kind: ClassVar[str] = "step.completed"
    attempt: int
    duration_ms: float


@attrs.frozen(kw_only=True)
class StepFailed(StepFinished):
    kind: ClassVar[str] = "step.failed"
    attempt: int
    error: str
    error_code: str


@attrs.frozen(kw_only=True)
class StepRetrying(Event):
    """Attempt `attempt` failed; the next one starts after `delay` seconds."""

    kind: ClassVar[str] = "step.retrying"
    attempt: int
    delay: float
    error: str
    error_code: str


@attrs.frozen(kw_only=True)
class StepSkipped(StepFinished):
    kind: ClassVar[str] = "step.skipped"
    reason: str


@attrs.frozen(kw_only=True)
class StepCancelled(StepFinished):
    kind: ClassVar[str] = "step.cancelled"


@attrs.frozen(kw_only=True)
class CompensationStarted(Event):
    """Attempt `attempt` of the rollback step of completed step `step_id` started."""

    kind: ClassVar[str] = "compensation.started"
    attempt: int


@attrs.frozen(kw_only=True)
class CompensationCompleted(Event):
    """The rollback step of `step_id` succeeded."""

    kind: ClassVar[str] = "compensation.completed"
    attempt: int
    duration_ms: float


@attrs.frozen(kw_only=True)
class CompensationFailed(Event):
    """The rollback step of `step_id` failed for good (after its retries)."""

    kind: ClassVar[str] = "compensation.failed"
    attempt: int
    error: str
    error_code: str


@attrs.frozen(kw_only=True)
class Progress(Event):
    """A step reported progress (`StepContext.report_progress`).

    `progress` is the workflow's, in percent, counting running steps' reports;
    `step_progress` the step's, 0 to 1.
    """

    kind: ClassVar[str] = "progress"
    progress: float
    step_progress: float | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class EventsDropped(Event):
    """`count` events were dropped because this subscriber's buffer was full."""

    kind: ClassVar[str] = "events.dropped"
    count: int


_TERMINAL = (WorkflowCompleted, WorkflowFailed, WorkflowCancelled)
_CHECKPOINT_EVERY = 512


class EventStream:
    """An async iterator over the events of one execution, or of all of them.

    It is subscribed from the moment `AsyncPluginOrchestrator.events` returns it. A
    stream for one execution ends after that execution's final event; a stream for all
    executions ends when the orchestrator closes. ``aclose()`` (or leaving
    ``async with``) unsubscribes early.
    """

    def __init__(
        self,
        execution_id: str | None,
        buffer: int,
        unsubscribe: Callable[[EventStream], None],
    ) -> None:
        self._unsubscribe = unsubscribe
        self.execution_id = execution_id
        self._buffer: deque[Event] = deque(maxlen=buffer)
        self._dropped = 0
        self._served = 0
        self._wakeup: anyio.Event | None = None
        self._closed = False

    def _put(self, event: Event) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped += 1
        self._buffer.append(event)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()
        if self.execution_id is not None and isinstance(event, _TERMINAL):
            self._finish()

    def _finish(self) -> None:
        self._closed = True
        self._unsubscribe(self)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        """Waits for the next event; cancelling it loses no event.

        When events are already buffered it returns without yielding to the loop, so a
        consumer drains a burst of events in one go; it still checkpoints every
        `_CHECKPOINT_EVERY` events.
        """
        self._served += 1
        if not self._buffer or self._served % _CHECKPOINT_EVERY == 0:
            await anyio.lowlevel.checkpoint()
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            wakeup = self._wakeup = anyio.Event()
            await wakeup.wait()
        if self._dropped:
            first = self._buffer[0]
            dropped, self._dropped = self._dropped, 0
            return EventsDropped(
                execution_id=first.execution_id,
                workflow_id=first.workflow_id,
                timestamp=first.timestamp,
                count=dropped,
            )
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Unsubscribe; events already buffered are discarded."""
        self._buffer.clear()
        self._finish()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class EventHub:
    """Fans events out to the streams subscribed to them; loop-thread only.

    Streams are held weakly: one its consumer has dropped unsubscribes itself.
    """

    def __init__(self) -> None:
        self._streams: tuple[weakref.ref[EventStream], ...] = ()
        self.listening = False
        """Whether any stream is subscribed; publishers skip building events otherwise."""

    def subscribe(self, execution_id: str | None, buffer: int) -> EventStream:
        stream = EventStream(execution_id, buffer, self._unsubscribe)
        self._streams = (*self._streams, weakref.ref(stream, self._forget))
        self.listening = True
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        self._forget(None, stream)

    def _forget(self, _dead: object, stream: EventStream | None = None) -> None:
        self._streams = tuple(ref for ref in self._streams if ref() not in (None, stream))
        self.listening = bool(self._streams)

    def publish(self, event: Event) -> None:
        for ref in self._streams:
            stream = ref()
            if stream is not None and stream.execution_id in (None, event.execution_id):
                stream._put(event)

    def close(self) -> None:
        """End every stream (the orchestrator is closing)."""
        for ref in self._streams:
            stream = ref()
            if stream is not None:
                stream._finish()
