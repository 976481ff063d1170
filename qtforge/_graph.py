"""Pictures of a workflow's step graph: Mermaid, Graphviz DOT, or a self-contained SVG.

Every format shows one node per step (its id, ``plugin.method`` and condition) and one
arrow per dependency, from the step that runs first. Given step statuses (say, from a
finished execution), nodes are coloured by status. The SVG is laid out here, in layers
(a step sits one layer below its deepest dependency, and each layer is ordered by the
mean position of the steps it depends on), so no Graphviz binary is needed.
"""

from __future__ import annotations

import heapq
import html
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from .orchestration import Workflow

__all__ = [
    "FORMATS",
    "STATUS_COLOURS",
    "Layout",
    "layout",
    "render",
    "to_dot",
    "to_mermaid",
    "to_svg",
]

FORMATS = ("mermaid", "dot", "svg")

# Fill and stroke per step status; pending (and no status) is plain white.
STATUS_COLOURS = {
    "pending": ("#ffffff", "#6c757d"),
    "running": ("#cfe2ff", "#0d6efd"),
    "paused": ("#e2d9f3", "#6f42c1"),
    "retrying": ("#ffe5d0", "#fd7e14"),
    "completed": ("#d1e7dd", "#198754"),
    "failed": ("#f8d7da", "#dc3545"),
    "skipped": ("#e9ecef", "#adb5bd"),
    "cancelled": ("#fff3cd", "#997404"),
}


def _lines(workflow: Workflow, index: int) -> list[str]:
    step = workflow.steps[index]
    lines = [step.step_id, f"{step.plugin_id}.{step.method_name}"]
    if isinstance(step.condition, str):
        lines.append(f"if {step.condition}")
    elif step.condition is not None:
        lines.append("if <callable>")
    return lines


def _edges(workflow: Workflow) -> list[tuple[int, int]]:
    """(dependency, dependent) index pairs, dependents in step order."""
    index = {step.step_id: i for i, step in enumerate(workflow.steps)}
    return [
        (index[name], i)
        for i, step in enumerate(workflow.steps)
        for name in dict.fromkeys(step.dependencies)
        if name in index and index[name] != i
    ]


def render(workflow: Workflow, fmt: str, statuses: Mapping[str, str] | None = None) -> str:
    """`workflow` in format `fmt` (one of `FORMATS`)."""
    renderers = {"mermaid": to_mermaid, "dot": to_dot, "svg": to_svg}
    if fmt not in renderers:
        raise ValueError(f"unknown graph format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return renderers[fmt](workflow, statuses)


# -- Mermaid and DOT ---------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    codes = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}
    return "".join(codes.get(char, char) for char in text)


def to_mermaid(workflow: Workflow, statuses: Mapping[str, str] | None = None) -> str:
    """A Mermaid ``flowchart`` (paste it into Markdown inside a ``mermaid`` code block)."""
    out = [f"%% workflow {workflow.workflow_id}", "flowchart TD"]
    for i in range(len(workflow.steps)):
        label = "<br/>".join(_mermaid_text(line) for line in _lines(workflow, i))
        out.append(f'    s{i}["{label}"]')
    out.extend(f"    s{a} --> s{b}" for a, b in _edges(workflow))
    if statuses:
        used = sorted({status for status in statuses.values() if status in STATUS_COLOURS})
        for status in used:
            fill, stroke = STATUS_COLOURS[status]
            out.append(f"    classDef {status} fill:{fill},stroke:{stroke}")
        for status in used:
            members = [
                f"s{i}"
                for i, step in enumerate(workflow.steps)
                if statuses.get(step.step_id) == status
            ]
            out.append(f"    class {','.join(members)} {status}")
    return "\n".join(out) + "\n"


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(workflow: Workflow, statuses: Mapping[str, str] | None = None) -> str:
    """A Graphviz ``digraph`` (render it with ``dot -Tpng``, or any DOT viewer)."""
    out = [
        f"digraph {_dot_text(workflow.workflow_id)} {{",
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for i, step in enumerate(workflow.steps):
        attributes = [f"label={_dot_text(chr(10).join(_lines(workflow, i)))}"]
        status = (statuses or {}).get(step.step_id)
        if status in STATUS_COLOURS:
            fill, stroke = STATUS_COLOURS[status]
            attributes += [f'fillcolor="{fill}"', f'color="{stroke}"']
        out.append(f"    {_dot_text(step.step_id)} [{', '.join(attributes)}];")
    steps = workflow.steps
    out.extend(
        f"    {_dot_text(steps[a].step_id)} -> {_dot_text(steps[b].step_id)};"
        for a, b in _edges(workflow)
    )
    out.append("}")
    return "\n".join(out) + "\n"


# -- SVG ---------------------------------------------------------------------------

_CHAR = 7.2  # width of a character at the label font size, near enough for layout
_LINE = 16  # line height
_PAD_X, _PAD_Y = 14, 10  # inside a node
_GAP_X, _GAP_Y = 28, 56  # between nodes, between layers
_MARGIN = 20
_PLACEHOLDER = 8.0  # width a long arrow takes in a layer it crosses


Point = tuple[float, float]


@attrs.frozen
class Layout:
    """Where everything goes.

    Attributes:
        boxes: Each step's box (left, top, width, height), by step index.
        layers: The step indices of each layer, top to bottom, in drawing order.
        routes: For each dependency ``(a, b)``, the points its arrow passes: the bottom
            of `a`, then the top and bottom of each layer it crosses, then the top of `b`.
    """

    boxes: tuple[tuple[float, float, float, float], ...]
    layers: tuple[tuple[int, ...], ...]
    routes: Mapping[tuple[int, int], tuple[Point, ...]]
    width: float
    height: float


def _depths(workflow: Workflow, deps: list[list[int]], dependents: list[list[int]]) -> list[int]:
    """Each step's layer: one below its deepest dependency."""
    waiting = [len(d) for d in deps]
    ready = [i for i, count in enumerate(waiting) if count == 0]
    depth = [0] * len(deps)
    seen = 0
    while ready:
        i = heapq.heappop(ready)
        seen += 1
        for j in dependents[i]:
            depth[j] = max(depth[j], depth[i] + 1)
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if seen < len(deps):
        raise ValueError(f"workflow {workflow.workflow_id!r}: its steps form a dependency cycle")
    return depth


def layout(workflow: Workflow) -> Layout:
    """Lay the steps out in layers, top to bottom.

    An arrow that skips layers passes through a narrow placeholder in each layer it
    crosses, so it is routed between boxes rather than behind them.

    Raises:
        ValueError: The steps form a dependency cycle.
    """
    count = len(workflow.steps)
    edges = _edges(workflow)
    deps: list[list[int]] = [[] for _ in range(count)]
    dependents: list[list[int]] = [[] for _ in range(count)]
    for a, b in edges:
        deps[b].append(a)
        dependents[a].append(b)
    depth = _depths(workflow, deps, dependents)

    # Nodes: the steps, then one placeholder per layer crossed by a long arrow.
    chains: dict[tuple[int, int], list[int]] = {}
    node_deps = [list(d) for d in deps]
    for a, b in edges:
        chain: list[int] = []
        for level in range(depth[a] + 1, depth[b]):
            node_deps.append([chain[-1] if chain else a])
            depth.append(level)
            chain.append(len(depth) - 1)
        chains[(a, b)] = chain
    layers: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for node, level in enumerate(depth):
        layers[level].append(node)
    rank = [0.0] * len(depth)
    for layer in layers:  # order each layer by the mean place of what it depends on
        layer.sort(
            key=lambda n: (
                sum(rank[d] for d in node_deps[n]) / len(node_deps[n]) if node_deps[n] else 0,
                n,
            )
        )
        for place, node in enumerate(layer):
            rank[node] = place

    sizes = [
        (
            max(len(line) for line in _lines(workflow, i)) * _CHAR + 2 * _PAD_X,
            len(_lines(workflow, i)) * _LINE + 2 * _PAD_Y,
        )
        for i in range(count)
    ] + [(_PLACEHOLDER, 0.0)] * (len(depth) - count)
    rows = [
        (
            sum(sizes[n][0] for n in layer) + _GAP_X * (len(layer) - 1),
            max(sizes[n][1] for n in layer),
        )
        for layer in layers
    ]
    width = max((row[0] for row in rows), default=0) + 2 * _MARGIN
    boxes: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)] * len(depth)
    tops: list[float] = []
    y = float(_MARGIN)
    for layer, (row_width, row_height) in zip(layers, rows, strict=True):
        tops.append(y)
        x = (width - row_width) / 2
        for node in layer:
            w, h = sizes[node]
            boxes[node] = (x, y + (row_height - h) / 2, w, h)
            x += w + _GAP_X
        y += row_height + _GAP_Y
    height = y - _GAP_Y + _MARGIN if layers else 2 * _MARGIN

    routes: dict[tuple[int, int], tuple[Point, ...]] = {}
    for (a, b), chain in chains.items():
        ax, ay, aw, ah = boxes[a]
        bx, by, bw, _ = boxes[b]
        points: list[Point] = [(ax + aw / 2, ay + ah)]
        for node in chain:
            x = boxes[node][0] + _PLACEHOLDER / 2
            points += [(x, tops[depth[node]]), (x, tops[depth[node]] + rows[depth[node]][1])]
        points.append((bx + bw / 2, by))
        routes[(a, b)] = tuple(points)
    return Layout(
        tuple(boxes[:count]),
        tuple(tuple(n for n in layer if n < count) for layer in layers),
        MappingProxyType(routes),
        width,
        height,
    )


def _path(points: tuple[Point, ...]) -> str:
    """Curves between layers, straight lines through the layers an arrow crosses."""
    (x, y), rest = points[0], points[1:]
    parts = [f"M {x:.1f} {y:.1f}"]
    for k, (nx, ny) in enumerate(rest):
        if k % 2 == 0:
            middle = (y + ny) / 2
            parts.append(f"C {x:.1f} {middle:.1f}, {nx:.1f} {middle:.1f}, {nx:.1f} {ny:.1f}")
        else:
            parts.append(f"L {nx:.1f} {ny:.1f}")
        x, y = nx, ny
    return " ".join(parts)


def to_svg(workflow: Workflow, statuses: Mapping[str, str] | None = None) -> str:
    """A standalone SVG picture (no scripts, fonts or links to fetch).

    Each step is a ``<g class="step" data-step="...">`` group, each dependency a
    ``<path class="dependency" data-from="..." data-to="...">``.
    """
    placed = layout(workflow)
    steps = workflow.steps
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{placed.width:.0f}" '
        f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="12">',
        f"<title>{html.escape(workflow.workflow_id)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#495057"/></marker></defs>',
    ]
    for (a, b), points in placed.routes.items():
        out.append(
            f'<path class="dependency" data-from="{html.escape(steps[a].step_id)}" '
            f'data-to="{html.escape(steps[b].step_id)}" d="{_path(points)}" fill="none" '
            'stroke="#495057" stroke-width="1.4" marker-end="url(#arrow)"/>'
        )
    for i, step in enumerate(steps):
        x, y, w, h = placed.boxes[i]
        status = (statuses or {}).get(step.step_id)
        fill, stroke = STATUS_COLOURS.get(status or "pending", STATUS_COLOURS["pending"])
        out.append(
            f'<g class="step" data-step="{html.escape(step.step_id)}"'
            + (f' data-status="{html.escape(status)}">' if status else ">")
        )
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )
        for n, line in enumerate(_lines(workflow, i)):
            style = ' font-weight="bold"' if n == 0 else ' fill="#495057"'
            baseline = y + _PAD_Y + _LINE * n + 12
            out.append(
                f'<text x="{x + w / 2:.1f}" y="{baseline:.1f}" text-anchor="middle"{style}>'
                f"{html.escape(line)}</text>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
