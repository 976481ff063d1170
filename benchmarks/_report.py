"""Report rows, and how they print: a Markdown table or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the report.

    Attributes:
        group: ``"async steps"``, ``"sync steps"``, ``"facade"``, ``"memory"``, ...
        name: The workload and what is measured.
        unit: Unit of `bare` and `qtforge`.
        bare: The bare anyio (or stdlib) baseline's figure, if there is one.
        qtforge: qtforge's figure.
        ratio: qtforge / bare: the median of the per-round ratios for timings.
        target: The goal from the issue, in words (empty if none).
        met: Whether `qtforge` meets `target` (``None`` if there is no target).
        extra: Raw samples and settings, for ``--json``.
    """

    group: str
    name: str
    unit: str
    bare: float | None
    qtforge: float
    ratio: float | None
    target: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _verdict(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[met]


def markdown(rows: list[Row], header: dict[str, Any]) -> str:
    """A Markdown table, preceded by the run's settings."""
    lines = [f"- {key}: {value}" for key, value in header.items()]
    lines += [
        "",
        "| group | workload | unit | bare anyio | qtforge | qtforge / bare | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(
            f"| {row.group} | {row.name} | {row.unit} | {_figure(row.bare)} | "
            f"{_figure(row.qtforge)} | {ratio} | {row.target} | {_verdict(row.met)} |"
        )
    dropped = sum(sum(row.extra.get("events_dropped", [])) for row in rows)
    lines += ["", f"Events dropped by the subscriber over all timed qtforge runs: {dropped}."]
    return "\n".join(lines)


def as_json(rows: list[Row], header: dict[str, Any]) -> str:
    return json.dumps(
        {"settings": header, "rows": [asdict(row) for row in rows]}, indent=2, ensure_ascii=False
    )
