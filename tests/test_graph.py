"""Pictures of the step graph: Mermaid, DOT and a self-laid-out SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from qtforge import _graph
from qtforge.orchestration import Workflow, WorkflowStep

SVG = "{http://www.w3.org/2000/svg}"


def diamond() -> Workflow:
    """fetch -> (images, videos, audio) -> combine -> report, and fetch -> report directly."""
    workflow = Workflow("media", "Media")
    for step_id, deps, condition in [
        ("fetch", [], None),
        ("images", ["fetch"], "kind == 'img' and n < 10"),
        ("videos", ["fetch"], None),
        ("audio", ["fetch"], None),
        ("combine", ["images", "videos", "audio"], None),
        ("report", ["combine", "fetch"], None),
    ]:
        workflow.add_step(
            WorkflowStep(step_id, "media", f"do_{step_id}", dependencies=deps, condition=condition)
        )
    return workflow


def test_mermaid_has_a_node_per_step_and_an_arrow_per_dependency() -> None:
    """The Mermaid flowchart labels each step with its call and condition (escaped) and draws
    one arrow per dependency, from the step that runs first."""
    text = _graph.to_mermaid(diamond())
    lines = text.splitlines()
    assert lines[:2] == ["%% workflow media", "flowchart TD"]
    assert "    s1[\"images<br/>media.do_images<br/>if kind == 'img' and n #lt; 10\"]" in lines
    arrows = [line.strip() for line in lines if "-->" in line]
    assert arrows == [
        "s0 --> s1",
        "s0 --> s2",
        "s0 --> s3",
        "s1 --> s4",
        "s2 --> s4",
        "s3 --> s4",
        "s4 --> s5",
        "s0 --> s5",
    ]


def test_dot_quotes_ids_and_labels() -> None:
    """DOT output quotes ids and escapes quotes, backslashes and newlines in labels."""
    workflow = Workflow("w").add_step(WorkflowStep('say "hi"', "p", "m", condition="a\\b"))
    workflow.add_step(WorkflowStep("next", "p", "m", dependencies=['say "hi"']))
    text = _graph.to_dot(workflow)
    assert 'digraph "w" {' in text
    assert '"say \\"hi\\"" [label="say \\"hi\\"\\np.m\\nif a\\\\b"];' in text
    assert '"say \\"hi\\"" -> "next";' in text


def test_statuses_colour_the_nodes() -> None:
    """Given step statuses, each format marks the nodes with their status colour."""
    statuses = {"fetch": "completed", "videos": "failed"}
    mermaid = _graph.to_mermaid(diamond(), statuses)
    assert "    classDef completed fill:#d1e7dd,stroke:#198754" in mermaid
    assert "    class s2 failed" in mermaid
    assert '"fetch" [label="fetch\\nmedia.do_fetch", fillcolor="#d1e7dd"' in _graph.to_dot(
        diamond(), statuses
    )
    root = ET.fromstring(_graph.to_svg(diamond(), statuses))
    groups = {g.get("data-step"): g for g in root.iter(f"{SVG}g")}
    assert groups["videos"].get("data-status") == "failed"
    assert groups["videos"].find(f"{SVG}rect").get("fill") == "#f8d7da"  # type: ignore[union-attr]
    assert groups["images"].get("data-status") is None


def test_svg_is_standalone_xml_with_a_box_per_step_and_a_path_per_dependency() -> None:
    """The SVG parses as XML, has one step group per step and one dependency path per
    dependency, and refers to nothing outside itself."""
    text = _graph.to_svg(diamond())
    root = ET.fromstring(text)
    steps = [g.get("data-step") for g in root.iter(f"{SVG}g")]
    assert steps == ["fetch", "images", "videos", "audio", "combine", "report"]
    paths = [
        (p.get("data-from"), p.get("data-to"))
        for p in root.iter(f"{SVG}path")
        if p.get("class") == "dependency"
    ]
    assert sorted(paths) == sorted(
        [
            ("fetch", "images"),
            ("fetch", "videos"),
            ("fetch", "audio"),
            ("images", "combine"),
            ("videos", "combine"),
            ("audio", "combine"),
            ("combine", "report"),
            ("fetch", "report"),
        ]
    )
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "<script" not in text


def test_layout_puts_each_step_below_its_dependencies() -> None:
    """Layers go top to bottom: a step's box starts below the bottom of each dependency's."""
    workflow = diamond()
    placed = _graph.layout(workflow)
    index = {step.step_id: i for i, step in enumerate(workflow.steps)}
    assert placed.layers == ((0,), (1, 2, 3), (4,), (5,))
    for step in workflow.steps:
        _, top, _, _ = placed.boxes[index[step.step_id]]
        for name in step.dependencies:
            _, dep_top, _, dep_height = placed.boxes[index[name]]
            assert top > dep_top + dep_height


def test_long_arrows_go_around_the_boxes_they_skip() -> None:
    """An arrow that skips a layer passes that layer beside its boxes, not through them."""
    workflow = diamond()
    placed = _graph.layout(workflow)
    route = placed.routes[(0, 5)]  # fetch -> report skips the layers of images.. and combine
    assert len(route) == 6  # start, through two layers (top and bottom each), end
    for x, y in route[1:-1]:
        for left, top, width, height in placed.boxes:
            inside = left <= x <= left + width and top < y < top + height
            assert not inside


def test_layout_refuses_a_cycle() -> None:
    """A cyclic workflow (possible with the builders, refused at registration) cannot be laid
    out: `ValueError` naming the workflow."""
    workflow = Workflow("loop")
    workflow.add_step(WorkflowStep("a", "p", "m", dependencies=["b"]))
    workflow.add_step(WorkflowStep("b", "p", "m", dependencies=["a"]))
    with pytest.raises(ValueError, match="'loop': its steps form a dependency cycle"):
        _graph.layout(workflow)


def test_render_dispatches_on_the_format_name() -> None:
    """`render` gives each format's output and rejects unknown formats."""
    workflow = diamond()
    assert _graph.render(workflow, "dot") == _graph.to_dot(workflow)
    assert _graph.render(workflow, "svg").startswith("<svg ")
    with pytest.raises(ValueError, match="unknown graph format 'png'"):
        _graph.render(workflow, "png")
