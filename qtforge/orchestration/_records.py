"""What an execution knows about itself, and the status/results dictionaries of SPEC 4 and 5.

Records are mutated only on the engine's event loop; the dictionaries are built from
them on demand, so reading status while a workflow runs is always consistent.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from .._errors import PluginError
from ._model import StepStatus

__all__ = [
    "ExecutionStatus",
    "StepRecord",
    "StoredStep",
    "Timeline",
    "error_fields",
    "iso_time",
]


class ExecutionStatus(enum.StrEnum):
    Pending = "pending"
    Running = "running"
    Paused = "paused"
    Completed = "completed"
    Failed = "failed"
    Cancelled = "cancelled"


class StepRecord:
    """One step's state within one execution. Times are loop times (`anyio.current_time`)."""

    __slots__ = (
        "attempts",
        "error",
        "finished_at",
        "progress",
        "reason",
        "result",
        "started_at",
        "status",
    )

    def __init__(self) -> None:
        self.status = StepStatus.Pending
        self.result: Any = None
        self.error: PluginError | None = None
        self.reason: str | None = None
        self.attempts = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.progress = 0.0


@attrs.frozen
class StoredStep:
    """A step as the store recorded it, for resuming (times: seconds since the epoch)."""

    status: StepStatus
    result: Any
    attempts: int
    error: PluginError | None
    reason: str | None
    started_at: float | None
    finished_at: float | None


def iso_time(seconds: float | None) -> str | None:
    """`seconds` since the epoch as ISO 8601 in UTC, to the microsecond, never later than
    `seconds` (a time read back and used as a lower bound still includes its moment)."""
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    if moment.timestamp() > seconds:  # rounded up to the next microsecond
        moment -= timedelta(microseconds=1)
    return moment.isoformat()


class Timeline:
    """Turns loop times into wall-clock ISO 8601 strings, anchored at one instant.

    Anchoring keeps durations exact and makes a mock clock give consistent timestamps.
    """

    __slots__ = ("_loop0", "_wall0")

    def __init__(self, loop_now: float, wall_now: float) -> None:
        self._loop0 = loop_now
        self._wall0 = wall_now

    def wall(self, loop_time: float) -> float:
        """Seconds since the epoch at `loop_time`."""
        return self._wall0 + (loop_time - self._loop0)

    def loop(self, wall_time: float | None) -> float | None:
        """The loop time at `wall_time` (seconds since the epoch), the inverse of `wall`."""
        return None if wall_time is None else self._loop0 + (wall_time - self._wall0)

    def iso(self, loop_time: float | None) -> str | None:
        return None if loop_time is None else iso_time(self.wall(loop_time))


def duration_ms(started: float | None, finished: float | None) -> float | None:
    if started is None or finished is None:
        return None
    return round((finished - started) * 1000, 3)


def error_fields(error: PluginError | None) -> dict[str, str | None]:
    """``error`` (a readable string) and ``error_code`` (the code's name), or ``None``s."""
    if error is None:
        return {"error": None, "error_code": None}
    return {"error": error.message or str(error), "error_code": error.code.name}


def step_result(record: StepRecord, timeline: Timeline) -> dict[str, Any]:
    """The ``steps[step_id]`` entry of `get_workflow_results`."""
    entry: dict[str, Any] = {
        "status": record.status.value,
        "result": record.result,
        **error_fields(record.error),
        "attempts": record.attempts,
        "started_at": timeline.iso(record.started_at),
        "finished_at": timeline.iso(record.finished_at),
        "duration_ms": duration_ms(record.started_at, record.finished_at),
    }
    if record.reason is not None:
        entry["reason"] = record.reason
    return entry
