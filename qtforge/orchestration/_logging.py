"""Library-style structlog: quiet unless the application asks.

When the application has configured structlog, qtforge logs through its configuration.
Otherwise qtforge's events go to the standard `logging` module under ``qtforge.*``
logger names, rendered as logfmt, so a script that configures nothing sees only
warnings (through `logging`'s last-resort handler) and no step chatter.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger", "wants_debug"]

_STDLIB_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.processors.format_exc_info,
    structlog.processors.LogfmtRenderer(
        key_order=["event", "workflow_id", "execution_id", "step_id", "attempt"],
        drop_missing=True,
    ),
]


def get_logger(name: str) -> Any:
    """A structlog logger for qtforge's module `name` (say ``"qtforge.engine"``)."""
    if structlog.is_configured():
        return structlog.get_logger(name)
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_STDLIB_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def wants_debug(name: str) -> bool:
    """Whether debug events of logger `name` can reach anyone.

    The engine asks once per execution and skips building per-step log calls when the
    answer is no, so disabled logging costs nothing on the hot path.
    """
    return structlog.is_configured() or logging.getLogger(name).isEnabledFor(logging.DEBUG)
