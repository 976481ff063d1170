"""An execution report: one self-contained HTML page built from a store's records.

The page holds the execution's summary, its step graph coloured by step status (the SVG
of `qtforge._graph`), a timeline with one bar per attempt (`qtforge._timeline`), each
step's details (status, attempts, result preview, error), the rollback steps when there
were any, and the event log. Everything is inline: no script, no stylesheet, font or
image to fetch, and a Content-Security-Policy that forbids any, so the file opens
offline and anything that came from the store (escaped throughout) cannot run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from . import _graph, _timeline
from ._timeline import duration_text, time_text
from .orchestration import Workflow, WorkflowFileError
from .store import JSONSerializer, Serializer

__all__ = ["build_report", "preview"]

_PREVIEW_CHARS = 300

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 24px; color: #212529; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #dee2e6; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; }
dl.summary { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.summary dt { font-weight: bold; } dl.summary dd { margin: 0; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; max-width: 560px; }
.status { padding: 1px 6px; border-radius: 4px; font-size: 12px; }
.error { color: #b02a37; }
.legend span.swatch { display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px;
  border: 1px solid #212529; vertical-align: middle; }
.legend span.rollback { border-style: dashed; background: #ffffff; }
.scroll { overflow-x: auto; }
ol.attempts { margin: 0; padding-left: 18px; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _status(status: Any) -> str:
    colour = _graph.STATUS_COLOURS.get(str(status), _graph.STATUS_COLOURS["pending"])[0]
    return f'<span class="status" style="background: {colour}">{_e(status)}</span>'


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, int | float) and isinstance(end, int | float):
        return float(end) - float(start)
    return None


def preview(data: Any, serializer: Serializer) -> str:
    """A short text for a stored value (bytes from `serializer`, or JSON text)."""
    if data is None:
        return ""
    if isinstance(data, bytes | str):
        try:
            value = serializer.loads(data.encode() if isinstance(data, str) else data)
        except Exception:  # any serializer's failure: show the size instead
            return f"<{len(data)} bytes>"
    else:
        value = data
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[: _PREVIEW_CHARS - 1] + "\u2026"
    return text


def _workflow(execution: Mapping[str, Any]) -> tuple[Workflow | None, str]:
    """The stored snapshot as a workflow, or None and why not."""
    try:
        return Workflow.from_dict(json.loads(execution["snapshot"])), ""
    except (KeyError, TypeError, ValueError, WorkflowFileError) as exc:
        return None, f"the stored workflow cannot be drawn: {exc}"


def _summary(execution: Mapping[str, Any], serializer: Serializer) -> list[str]:
    started, finished = execution.get("created_at"), execution.get("finished_at")
    fields = [
        ("Workflow", _e(execution.get("workflow_id"))),
        ("Status", _status(execution.get("status"))),
        ("Started", _e(time_text(started))),
        ("Finished", _e(time_text(finished))),
        ("Duration", _e(duration_text(_seconds(started, finished)))),
    ]
    if execution.get("resumes"):
        fields.append(("Resumed", _e(f"{execution['resumes']} time(s)")))
    if execution.get("error"):
        code = f" ({execution['error_code']})" if execution.get("error_code") else ""
        fields.append(("Error", f'<span class="error">{_e(execution["error"] + code)}</span>'))
    fields.append(
        ("Initial data", f"<pre>{_e(preview(execution.get('initial_data'), serializer))}</pre>")
    )
    if execution.get("data") is not None:
        fields.append(("Final data", f"<pre>{_e(preview(execution['data'], serializer))}</pre>"))
    return ['<dl class="summary">', *(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in fields), "</dl>"]


def _legend() -> str:
    items = [
        f'<span class="swatch" style="background: {colour}"></span>{_e(status)}'
        for status, colour in _timeline.ATTEMPT_COLOURS.items()
    ]
    items.append('<span class="swatch rollback"></span>rollback step (\u21ba)')
    return (
        '<p class="legend">Attempt outcome:' + "".join(items) + "<br>A dashed line joins an "
        "attempt to its retry; hover a bar for its details, click it for the step's.</p>"
    )


def _attempt_list(attempts: Sequence[Mapping[str, Any]]) -> str:
    if not attempts:
        return ""
    items = []
    for row in attempts:
        took = duration_text(_seconds(row.get("started_at"), row.get("finished_at")))
        text = f"#{row.get('attempt')} {row.get('status')}, {took}"
        error = f': <span class="error">{_e(row["error"])}</span>' if row.get("error") else ""
        items.append(f"<li>{_e(text)}{error}</li>")
    return f'<ol class="attempts">{"".join(items)}</ol>'


def _steps_table(
    step_ids: Sequence[str],
    execution: Mapping[str, Any],
    anchors: Mapping[str, str],
    serializer: Serializer,
) -> list[str]:
    steps: Mapping[str, Mapping[str, Any]] = execution.get("steps") or {}
    out = [
        '<table class="steps"><tr><th>Step</th><th>Status</th><th>Attempts</th>'
        "<th>Started</th><th>Duration</th><th>Result</th><th>Error</th></tr>"
    ]
    for step_id in step_ids:
        row = steps.get(step_id, {})
        attempts = [a for a in execution.get("attempts") or () if a.get("step_id") == step_id]
        error = row.get("error") or ""
        if row.get("error_code"):
            error = f"{error} ({row['error_code']})"
        if row.get("reason") and row.get("reason") != row.get("error"):
            error = f"{error}\n{row['reason']}".strip()
        out.append(
            f'<tr id="{_e(anchors[step_id])}" data-step="{_e(step_id)}">'
            f"<td><b>{_e(step_id)}</b></td><td>{_status(row.get('status', 'pending'))}</td>"
            f"<td>{_e(row.get('attempts', len(attempts)))}{_attempt_list(attempts)}</td>"
            f"<td>{_e(time_text(row.get('started_at')))}</td>"
            f"<td>{_e(duration_text(_seconds(row.get('started_at'), row.get('finished_at'))))}"
            f"</td><td><pre>{_e(preview(row.get('result'), serializer))}</pre></td>"
            f'<td><pre class="error">{_e(error)}</pre></td></tr>'
        )
    out.append("</table>")
    return out


def _compensations_table(
    compensations: Sequence[Mapping[str, Any]], workflow: Workflow | None
) -> list[str]:
    rollbacks = workflow.rollback_steps if workflow else {}
    out = [
        "<h2>Compensation</h2>",
        "<p>The rollback steps of completed steps, run after the failure or cancellation, "
        "latest completion first.</p>",
        '<table class="compensations"><tr><th>Compensated step</th><th>Rollback step</th>'
        "<th>Status</th><th>Attempts</th><th>Started</th><th>Duration</th><th>Error</th></tr>",
    ]
    for row in compensations:
        took = duration_text(_seconds(row.get("started_at"), row.get("finished_at")))
        rollback = rollbacks.get(str(row.get("step_id")))
        called = (
            f"{rollback.step_id} ({rollback.plugin_id}.{rollback.method_name})" if rollback else ""
        )
        error = row.get("error") or ""
        if row.get("error_code"):
            error = f"{error} ({row['error_code']})"
        out.append(
            f'<tr data-step="{_e(row.get("step_id"))}"><td>{_e(row.get("step_id"))}</td>'
            f"<td>{_e(called)}</td><td>{_status(row.get('status'))}</td>"
            f"<td>{_e(row.get('attempts'))}</td><td>{_e(time_text(row.get('started_at')))}</td>"
            f'<td>{_e(took)}</td><td><pre class="error">{_e(error)}</pre></td></tr>'
        )
    out.append("</table>")
    return out


def _events_table(events: Sequence[Mapping[str, Any]], origin: float) -> list[str]:
    out = [
        f"<details><summary>{len(events)} events</summary>",
        '<table class="events"><tr><th>#</th><th>At</th><th>Step</th><th>Attempt</th>'
        "<th>Event</th><th>Details</th></tr>",
    ]
    for row in events:
        at = _seconds(origin, row.get("ts"))
        out.append(
            f"<tr><td>{_e(row.get('seq'))}</td><td>+{_e(duration_text(at))}</td>"
            f"<td>{_e(row.get('step_id'))}</td><td>{_e(row.get('attempt'))}</td>"
            f"<td>{_e(row.get('type'))}</td><td><pre>{_e(row.get('payload'))}</pre></td></tr>"
        )
    out.append("</table></details>")
    return out


def _notes(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """What a timeline row says for a step that never ran: its status and why."""
    notes = {}
    for step_id, row in steps.items():
        reason = row.get("reason") or row.get("error")
        notes[step_id] = f"{row.get('status')}: {reason}" if reason else str(row.get("status"))
    return notes


def build_report(
    execution: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    *,
    serializer: Serializer | None = None,
) -> str:
    """The HTML page for `execution`, a store's ``load()`` row (with ``steps``,
    ``attempts`` and, when there were rollback steps, ``compensations``), and its
    `events` (the store's ``events()`` rows). `serializer` reads stored results and
    data (default: JSON)."""
    serializer = serializer or JSONSerializer()
    workflow, problem = _workflow(execution)
    steps: Mapping[str, Any] = execution.get("steps") or {}
    drawn = [step.step_id for step in workflow.steps] if workflow else []
    step_ids = list(dict.fromkeys([*drawn, *steps]))
    attempts = list(execution.get("attempts") or ())
    step_ids += [a["step_id"] for a in attempts if a["step_id"] not in step_ids]
    anchors = {step_id: f"step-{n}" for n, step_id in enumerate(step_ids)}
    compensations = list(execution.get("compensations") or ())  # a custom store may omit it
    origin = float(
        execution.get("created_at") or min((a["started_at"] for a in attempts), default=0)
    )
    finished = execution.get("finished_at") or execution.get("updated_at")
    title = f"qtforge report: {execution.get('workflow_id')} / {execution.get('execution_id')}"

    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Execution {_e(execution.get('execution_id'))}</h1>",
        *_summary(execution, serializer),
        "<h2>Step graph</h2>",
    ]
    if workflow is not None:
        statuses = {step_id: str(row.get("status")) for step_id, row in steps.items()}
        out.append(f'<div class="scroll graph">{_graph.to_svg(workflow, statuses)}</div>')
    else:
        out.append(f'<p class="error">{_e(problem)}</p>')
    out += [
        f"<h2>Timeline ({len(attempts)} attempt{'s' if len(attempts) != 1 else ''})</h2>",
        _legend(),
        '<div class="scroll">',
        _timeline.to_svg(
            step_ids,
            attempts,
            origin=origin,
            end=finished,
            compensations=compensations,
            links=anchors,
            notes=_notes(steps),
        ),
        "</div>",
        "<h2>Steps</h2>",
        *_steps_table(step_ids, execution, anchors, serializer),
    ]
    if compensations:
        out += _compensations_table(compensations, workflow)
    out += ["<h2>Events</h2>", *_events_table(events, origin), "</body></html>"]
    return "\n".join(out) + "\n"
