"""A timeline (Gantt chart) of an execution's attempts, as a self-contained SVG.

One row per step, in workflow order, and one bar per attempt of that step, placed by its
start and finish times and coloured by its outcome (``succeeded``, ``failed``,
``timed_out``, ``cancelled``, ``abandoned``; ``started`` for an attempt with no end on
record, drawn to the end of the chart). A dashed line joins an attempt to the retry that
followed it. Compensation gets rows of its own below the steps: one per compensated step,
with a dashed bar for its rollback step. Every bar carries a ``<title>`` (the tooltip:
step, attempt, start, duration, error) and data attributes, so that tools and tests can
find it: ``<rect class="attempt" data-step=... data-attempt=... data-status=...>`` and
``<rect class="compensation" data-step=...>``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["ATTEMPT_COLOURS", "duration_text", "nice_step", "time_text", "to_svg"]

# Fill per attempt outcome; also used for compensation outcomes (``completed`` ...).
ATTEMPT_COLOURS = {
    "succeeded": "#198754",
    "failed": "#dc3545",
    "timed_out": "#fd7e14",
    "cancelled": "#d4a106",
    "abandoned": "#6c757d",
    "started": "#0d6efd",
}
_COMPENSATION_COLOURS = {
    "completed": ATTEMPT_COLOURS["succeeded"],
    "failed": ATTEMPT_COLOURS["failed"],
    "cancelled": ATTEMPT_COLOURS["cancelled"],
    "running": ATTEMPT_COLOURS["started"],
}
_OTHER = "#adb5bd"

_LABEL_WIDTH = 180  # the step ids' column
_CHART_WIDTH = 760  # the time axis
_ROW = 26  # height of a row
_BAR = 16  # height of a bar
_AXIS = 28  # the axis labels above the rows
_MARGIN = 10
_MIN_BAR = 2.0  # a bar never gets thinner than this, so an instant attempt still shows
_LABEL_CHARS = 24  # longer step ids are shortened in the label column (not in tooltips)


def time_text(timestamp: float | None) -> str:
    """A Unix time as ``2026-11-28 23:47:18.123 UTC``; ``-`` if unknown."""
    if timestamp is None:
        return "-"
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"


def duration_text(seconds: float | None) -> str:
    """``0.25 ms``, ``850 ms``, ``12.5 s``, ``3 min 20 s``; ``-`` if unknown."""
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.2g} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        text = f"{seconds:.3g}" if seconds < 10 else f"{seconds:.1f}"
        return f"{text.removesuffix('.0')} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def nice_step(span: float, ticks: int = 8) -> float:
    """A tick spacing of 1, 2 or 5 times a power of ten giving about `ticks` ticks."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _bounds(
    origin: float, attempts: Sequence[Mapping[str, Any]], extra: Sequence[float | None]
) -> float:
    """The chart's end: the latest time on record (at least a millisecond after `origin`)."""
    times = [origin + 0.001, *(t for t in extra if t is not None)]
    for row in attempts:
        found = (_number(row.get("started_at")), _number(row.get("finished_at")))
        times += [t for t in found if t is not None]
    return max(times)


def _label(step_id: str) -> str:
    if len(step_id) <= _LABEL_CHARS:
        return step_id
    return step_id[: _LABEL_CHARS - 1] + "\u2026"


def _tooltip(kind: str, row: Mapping[str, Any], start: float, end: float | None) -> str:
    lines = [f"{kind} {row.get('step_id')}"]
    if "attempt" in row:
        lines[0] += f", attempt {row['attempt']}"
    elif row.get("attempts"):
        lines[0] += f" ({row['attempts']} attempt{'s' if row['attempts'] != 1 else ''})"
    lines.append(f"status: {row.get('status')}")
    lines.append(f"start: {time_text(start)}")
    lines.append(f"duration: {duration_text(None if end is None else end - start)}")
    if row.get("error"):
        lines.append(f"error: {row['error']}")
    return "\n".join(lines)


def to_svg(
    step_ids: Sequence[str],
    attempts: Sequence[Mapping[str, Any]],
    *,
    origin: float,
    end: float | None = None,
    compensations: Sequence[Mapping[str, Any]] = (),
    links: Mapping[str, str] | None = None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """The timeline of `attempts` (store rows: step_id, attempt, status, started_at,
    finished_at, error) for the steps `step_ids`, from `origin` (Unix time) to `end`
    (default: the latest time in the rows). `compensations` are rows of rollback steps
    (step_id: the compensated step, status, attempts, error, started_at, finished_at); one
    without a start time gets a row but no bar. `links` maps a step id to a URL fragment
    its bars link to; `notes` a step id to a text shown in its row when it has no attempt
    (say, why it was skipped).
    """
    steps = list(dict.fromkeys([*step_ids, *(str(row["step_id"]) for row in attempts)]))
    rows = {step_id: n for n, step_id in enumerate(steps)}
    timed = [c for c in compensations if _number(c.get("started_at")) is not None]
    finish = _bounds(origin, [*attempts, *timed], [end])
    scale = _CHART_WIDTH / (finish - origin)
    count = len(steps) + len(compensations)
    top = _MARGIN + _AXIS
    separator = _ROW // 2 if compensations else 0
    height = top + count * _ROW + separator + _MARGIN
    width = _MARGIN + _LABEL_WIDTH + _CHART_WIDTH + 3 * _MARGIN  # room for the last label
    left = _MARGIN + _LABEL_WIDTH

    def x_of(t: float) -> float:
        return left + (t - origin) * scale

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
    ]
    # The axis: a tick and a label every `tick` seconds, with a faint line down the rows.
    tick = nice_step(finish - origin)
    for k in range(int((finish - origin) / tick + 1e-9) + 1):
        x = x_of(origin + k * tick)
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - _MARGIN}" '
            'stroke="#dee2e6"/>'
            f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" fill="#495057">'
            f"{html.escape(duration_text(k * tick) if k else '0')}</text>"
        )
    tried = {str(row["step_id"]) for row in attempts}
    labels = [*steps, *(str(c.get("step_id")) for c in compensations)]
    for n, step_id in enumerate(labels):
        y: float = top + n * _ROW + (separator if n >= len(steps) else 0)
        if n % 2 == 0:
            out.append(
                f'<rect x="{_MARGIN}" y="{y}" width="{width - 2 * _MARGIN}" height="{_ROW}" '
                'fill="#f8f9fa"/>'
            )
        prefix = "\u21ba " if n >= len(steps) else ""  # rollback steps are marked
        out.append(
            f'<text x="{_MARGIN + 4}" y="{y + _ROW / 2 + 4:.1f}"><title>'
            f"{html.escape(step_id)}</title>{html.escape(prefix + _label(step_id))}</text>"
        )
        note = (notes or {}).get(step_id) if n < len(steps) and step_id not in tried else None
        if note:
            out.append(
                f'<text class="note" x="{left + 4}" y="{y + _ROW / 2 + 4:.1f}" fill="#6c757d" '
                f'font-style="italic">{html.escape(note)}</text>'
            )
    if compensations:
        y = top + len(steps) * _ROW + separator / 2
        out.append(
            f'<line x1="{_MARGIN}" y1="{y}" x2="{width - _MARGIN}" y2="{y}" '
            'stroke="#6c757d" stroke-dasharray="4 3"/>'
        )

    ends: dict[str, float] = {}  # each step's previous attempt's end, for the retry lines
    for row in sorted(attempts, key=lambda r: (rows[str(r["step_id"])], r["attempt"])):
        step_id = str(row["step_id"])
        start = _number(row.get("started_at")) or origin
        stop = _number(row.get("finished_at"))
        y = top + rows[step_id] * _ROW + (_ROW - _BAR) / 2
        if step_id in ends:
            out.append(
                f'<line class="retry-wait" x1="{x_of(ends[step_id]):.1f}" y1="{y + _BAR / 2}" '
                f'x2="{x_of(start):.1f}" y2="{y + _BAR / 2}" stroke="#495057" '
                'stroke-dasharray="3 3"/>'
            )
        ends[step_id] = finish if stop is None else stop
        out.append(_bar("attempt", row, start, stop, x_of(start), x_of(ends[step_id]), y, links))
    for n, row in enumerate(compensations):
        start_or_none = _number(row.get("started_at"))
        if start_or_none is None:
            continue
        stop = _number(row.get("finished_at"))
        y = top + (len(steps) + n) * _ROW + separator + (_ROW - _BAR) / 2
        x1, x2 = x_of(start_or_none), x_of(finish if stop is None else stop)
        out.append(_bar("compensation", row, start_or_none, stop, x1, x2, y, None))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _bar(
    kind: str,
    row: Mapping[str, Any],
    start: float,
    stop: float | None,
    x1: float,
    x2: float,
    y: float,
    links: Mapping[str, str] | None,
) -> str:
    status = str(row.get("status"))
    step_id = str(row.get("step_id"))
    if kind == "attempt":
        fill = ATTEMPT_COLOURS.get(status, _OTHER)
        extra = f' data-attempt="{html.escape(str(row.get("attempt")))}"'
        border = ' stroke="#212529" stroke-width="0.5"'
        title = "step"
    else:
        fill = _COMPENSATION_COLOURS.get(status, _OTHER)
        extra = ""
        border = ' stroke="#212529" stroke-width="1.2" stroke-dasharray="3 2"'
        title = "rollback of step"
    bar = (
        f'<rect class="{kind}" data-step="{html.escape(step_id)}"{extra} '
        f'data-status="{html.escape(status)}" x="{x1:.1f}" y="{y:.1f}" '
        f'width="{max(x2 - x1, _MIN_BAR):.1f}" height="{_BAR}" rx="3" fill="{fill}"{border}>'
        f"<title>{html.escape(_tooltip(title, row, start, stop))}</title></rect>"
    )
    if kind == "attempt" and x2 - x1 >= 22:  # room for the attempt number
        bar += (
            f'<text x="{x1 + 4:.1f}" y="{y + _BAR - 4:.1f}" fill="#ffffff" font-size="10" '
            f'pointer-events="none">#{html.escape(str(row.get("attempt")))}</text>'
        )
    link = (links or {}).get(step_id)
    if link is not None:
        bar = f'<a href="#{html.escape(link)}">{bar}</a>'
    return bar
