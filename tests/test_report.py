"""``qtforge report``: one self-contained HTML file per execution, read from a store, with
the step graph, one timeline bar per attempt, each step's details, and everything from
the store escaped; checked as text and, when Chromium is installed, as a rendered page."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result
from plugins_for_tests import Probe, manager_with, step, workflow

from qtforge._cli import main
from qtforge._report_html import build_report
from qtforge._timeline import duration_text, nice_step
from qtforge.orchestration import AsyncPluginOrchestrator, ExecutionMode, Workflow
from qtforge.store import SQLiteStore

SCRIPT = '<script>alert("xss")</script>'
IMAGE = "<img src=http://example.invalid/x.png onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_TIMEOUT = 45  # seconds; a headless page dump takes about one


@dataclass
class Stored:
    """A store holding one finished execution, and that execution as the store has it."""

    path: Path
    execution_id: str
    saga_id: str
    attempts: list[dict[str, Any]]
    execution: dict[str, Any]
    events: list[dict[str, Any]]


def _saga() -> Workflow:
    """book -> pay -> ship, where ship fails, so pay's rollback (which fails) and book's run."""
    built = workflow(
        "saga",
        step("book", params={"returns": {"booking": 7}}),
        step("pay", after=["book"]),
        step("ship", "fail", after=["pay"]),
    )
    built.add_rollback_step("book", step("unbook"))
    built.add_rollback_step("pay", step("refund", "fail", params={"message": SCRIPT}))
    return built


async def _record(path: Path) -> tuple[str, str]:
    """Run a workflow with a retried step, a failing non-critical step and a skipped one,
    then a workflow whose failure runs compensation; return both execution ids."""
    built = workflow(
        "report_demo",
        step("load", params={"returns": {"rows": 3, "html": IMAGE}}),
        step("flaky", "fail", after=["load"], params={"times": 1}, max_retries=2, retry_delay=1),
        step("optional", "fail", after=["load"], params={"message": SCRIPT}, critical=False),
        step("after_optional", after=["optional"]),
        step("final", after=["flaky"], params={"returns": {"done": True}}),
        mode=ExecutionMode.Parallel,
    )
    async with AsyncPluginOrchestrator(manager_with(Probe()), store=path) as orchestrator:
        orchestrator.register_workflow(built).value()
        orchestrator.register_workflow(_saga()).value()
        demo = (await orchestrator.execute_workflow("report_demo")).value()
        return demo, (await orchestrator.execute_workflow("saga")).value()


async def _load(path: Path, execution_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = SQLiteStore(path)
    await store.open()
    try:
        execution = await store.load(execution_id)
        assert execution is not None
        return execution, await store.events(execution_id)
    finally:
        await store.aclose()


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    path = tmp_path_factory.mktemp("report") / "runs.db"
    execution_id, saga_id = anyio.run(_record, path)
    execution, events = anyio.run(_load, path, execution_id)
    return Stored(path, execution_id, saga_id, execution["attempts"], execution, events)


class Page(HTMLParser):
    """The tags (name and attributes) and the text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and cls in a.get("class", "").split()]


def parse(document: str) -> Page:
    page = Page()
    page.feed(document)
    page.close()
    return page


def report(stored: Stored, tmp_path: Path, *extra: str) -> tuple[Result, Path]:
    output = tmp_path / "report.html"
    args = ["report", stored.execution_id, "--store", str(stored.path), "-o", str(output)]
    return CliRunner().invoke(main, [*args, *extra]), output


def bars(page: Page) -> Counter[tuple[str, str, str]]:
    """(step, attempt, status) of each attempt bar."""
    return Counter(
        (a["data-step"], a["data-attempt"], a["data-status"])
        for a in page.with_class("rect", "attempt")
    )


def stored_attempts(stored: Stored) -> Counter[tuple[str, str, str]]:
    return Counter((a["step_id"], str(a["attempt"]), a["status"]) for a in stored.attempts)


def test_the_recorded_execution_has_retries_failures_and_a_skipped_step(stored: Stored) -> None:
    """The fixture's execution holds what the report must show: a retried step (failed,
    then succeeded), a failed non-critical step, and a skipped one."""
    assert stored_attempts(stored) == Counter(
        {
            ("load", "1", "succeeded"): 1,
            ("flaky", "1", "failed"): 1,
            ("flaky", "2", "succeeded"): 1,
            ("optional", "1", "failed"): 1,
            ("final", "1", "succeeded"): 1,
        }
    )
    assert stored.execution["steps"]["after_optional"]["status"] == "skipped"


def test_report_writes_one_timeline_bar_per_stored_attempt(stored: Stored, tmp_path: Path) -> None:
    """Each attempt in the store is exactly one bar, carrying its step, number and outcome."""
    result, output = report(stored, tmp_path)
    assert result.exit_code == 0, result.output
    page = parse(output.read_text(encoding="utf-8"))
    assert bars(page) == stored_attempts(stored)
    assert sum(bars(page).values()) == len(stored.attempts) == 5
    assert len(page.with_class("line", "retry-wait")) == 1  # flaky's retry is marked


def test_report_bars_have_tooltips_with_step_attempt_start_duration_and_error(
    stored: Stored, tmp_path: Path
) -> None:
    """A failed attempt's bar has a title naming the step, attempt, start, duration and error."""
    _, output = report(stored, tmp_path)
    document = output.read_text(encoding="utf-8")
    start = document.index('data-step="flaky" data-attempt="1"')
    title = document[document.index("<title>", start) : document.index("</title>", start)]
    assert "step flaky, attempt 1" in title
    assert "status: failed" in title
    assert "start: 20" in title  # a UTC date and time
    assert "duration: " in title
    assert "error: step &#x27;flaky&#x27;: probe.fail() raised RuntimeError: boom #1" in title


def test_report_is_self_contained(stored: Stored, tmp_path: Path) -> None:
    """The page loads nothing: no script, stylesheet, image or frame, no http(s) src or
    href, and a Content-Security-Policy that forbids fetching anything."""
    _, output = report(stored, tmp_path)
    page = parse(output.read_text(encoding="utf-8"))
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    for tag, attributes in page.tags:
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = attributes.get(name, "")
            assert not value.startswith(("http:", "https:", "//")), (tag, name, value)
    policy = [
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policy == ["default-src 'none'; style-src 'unsafe-inline'; img-src data:"]


def test_report_escapes_errors_and_results_from_the_store(stored: Stored, tmp_path: Path) -> None:
    """A ``<script>`` in an error and an ``<img>`` in a result appear as text, never as markup."""
    _, output = report(stored, tmp_path)
    document = output.read_text(encoding="utf-8")
    page = parse(document)
    assert "<script" not in document
    assert "<img" not in document
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt;" in document
    text = "".join(page.text)
    assert SCRIPT in text  # shown to the reader as written
    assert IMAGE.replace('"', '\\"') in text  # in the result preview (a JSON string)


def test_report_colours_the_step_graph_by_stored_status(stored: Stored, tmp_path: Path) -> None:
    """The step graph has a node per step with the status the store recorded."""
    _, output = report(stored, tmp_path)
    nodes = parse(output.read_text(encoding="utf-8")).with_class("g", "step")
    assert {n["data-step"]: n["data-status"] for n in nodes} == {
        "load": "completed",
        "flaky": "completed",
        "optional": "failed",
        "after_optional": "skipped",
        "final": "completed",
    }


def test_report_details_give_status_attempts_result_and_error(
    stored: Stored, tmp_path: Path
) -> None:
    """Each step's row shows its status, attempt count and list, result preview and error."""
    _, output = report(stored, tmp_path)
    document = output.read_text(encoding="utf-8")

    def row(step_id: str) -> str:
        start = document.index('<tr id="step-', document.index('<table class="steps">'))
        start = document.index(f'data-step="{step_id}"', start)
        return document[start : document.index("</tr>", start)]

    assert "completed" in row("flaky")
    assert "<td>2<ol" in row("flaky")
    assert "#1 failed" in row("flaky")
    assert "#2 succeeded" in row("flaky")
    assert "{&quot;recovered_on&quot;: 2}" in row("flaky")
    assert "failed" in row("optional")
    assert "(ExecutionFailed)" in row("optional")
    assert "skipped" in row("after_optional")
    assert "optional" in row("after_optional")


def test_report_shows_the_compensation_the_store_recorded(stored: Stored, tmp_path: Path) -> None:
    """A failed execution's rollbacks get a section (compensated step, rollback step,
    status, error) and a dashed timeline bar each, which are not counted as attempts."""
    args = ["report", stored.saga_id, "--store", str(stored.path), "-o", str(tmp_path / "r.html")]
    assert CliRunner().invoke(main, args).exit_code == 0
    document = (tmp_path / "r.html").read_text(encoding="utf-8")
    page = parse(document)
    section = document.split("<h2>Compensation</h2>")[1]
    assert [
        (a["data-step"], a["data-status"]) for a in page.with_class("rect", "compensation")
    ] == [
        ("pay", "failed"),
        ("book", "completed"),
    ]  # latest completion first
    assert "refund (probe.fail)" in section
    assert "unbook (probe.emit)" in section
    assert "&lt;script&gt;alert(&quot;xss&quot;)&lt;/script&gt; #1" in section
    assert "<script" not in document
    assert Counter(a["data-step"] for a in page.with_class("rect", "attempt")) == Counter(
        {"book": 1, "pay": 1, "ship": 1}
    )


def test_no_compensation_section_without_compensations(stored: Stored) -> None:
    """An execution with no compensation rows (or a store without the key) has no section."""
    assert stored.execution["compensations"] == []
    assert "<h2>Compensation</h2>" not in build_report(stored.execution, stored.events)
    without = {k: v for k, v in stored.execution.items() if k != "compensations"}
    document = build_report(without, stored.events)
    assert "<h2>Compensation</h2>" not in document
    assert 'class="compensation"' not in document


def test_report_to_standard_output(stored: Stored) -> None:
    """``-o -`` writes the page to standard output."""
    args = ["report", stored.execution_id, "--store", str(stored.path), "-o", "-"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert result.stdout.startswith("<!DOCTYPE html>")
    assert sum(bars(parse(result.stdout)).values()) == len(stored.attempts)


def _fails_cleanly(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback, just the message
    assert message in result.output
    assert "Traceback" not in result.output


def test_report_of_an_unknown_execution_fails_cleanly(stored: Stored, tmp_path: Path) -> None:
    """An id the store does not hold exits 2 naming it, and writes no file."""
    output = tmp_path / "report.html"
    args = ["report", "no-such-id", "--store", str(stored.path), "-o", str(output)]
    result = CliRunner().invoke(main, args)
    _fails_cleanly(result, "no execution with id 'no-such-id'")
    assert not output.exists()


def test_report_from_a_missing_store_fails_without_creating_it(tmp_path: Path) -> None:
    """A store path that does not exist exits 2, and no database is created there."""
    missing = tmp_path / "missing.db"
    args = ["report", "x", "--store", str(missing), "-o", str(tmp_path / "r.html")]
    result = CliRunner().invoke(main, args)
    _fails_cleanly(result, "does not exist")
    assert not missing.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"id,name\n1,a\n", "is not a qtforge store (not SQLite)", id="text"),
        pytest.param(b"", "is empty, not a qtforge store", id="empty"),
    ],
)
def test_report_from_a_file_that_is_not_a_store_fails_cleanly(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """A file that is not a qtforge store exits 2 with the store's message, untouched."""
    bad = tmp_path / "bad.db"
    bad.write_bytes(content)
    args = ["report", "x", "--store", str(bad), "-o", str(tmp_path / "r.html")]
    _fails_cleanly(CliRunner().invoke(main, args), message)
    assert bad.read_bytes() == content


def test_report_from_a_foreign_sqlite_database_fails_cleanly(tmp_path: Path) -> None:
    """A SQLite database that is not a qtforge store exits 2 saying so."""
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.close()
    args = ["report", "x", "--store", str(foreign), "-o", str(tmp_path / "r.html")]
    _fails_cleanly(CliRunner().invoke(main, args), "is a SQLite database but not a qtforge store")


def test_report_to_an_unwritable_path_fails_cleanly(stored: Stored, tmp_path: Path) -> None:
    """An output path in a missing directory exits 2 naming the path."""
    output = tmp_path / "no" / "such" / "dir" / "report.html"
    args = ["report", stored.execution_id, "--store", str(stored.path), "-o", str(output)]
    _fails_cleanly(CliRunner().invoke(main, args), f"cannot write {str(output)!r}")


def test_report_needs_store_and_output_options(stored: Stored) -> None:
    """Leaving out ``--store`` or ``-o`` is a usage error (exit 2)."""
    assert CliRunner().invoke(main, ["report", stored.execution_id, "-o", "-"]).exit_code == 2
    args = ["report", stored.execution_id, "--store", str(stored.path)]
    assert CliRunner().invoke(main, args).exit_code == 2


def test_report_in_headless_chromium_has_one_bar_per_attempt(
    stored: Stored, tmp_path: Path
) -> None:
    """Rendered offline by Chromium, the page's timeline has one bar per stored attempt, and
    the store's ``<script>`` text did not become an element."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless Chromium not installed: no {CHROMIUM} (Debian package chromium)")
    _, output = report(stored, tmp_path)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
        output.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert done.returncode == 0, done.stderr[-2000:]
    page = parse(done.stdout)
    assert bars(page) == stored_attempts(stored)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert SCRIPT in "".join(page.text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.0, "0 ms"), (0.0005, "0.5 ms"), (0.0123, "12 ms"), (1.5, "1.5 s"),
     (12.0, "12 s"), (12.34, "12.3 s"), (200, "3 min 20 s"), (7260, "2 h 1 min")],
)  # fmt: skip
def test_durations_read_naturally(seconds: float | None, text: str) -> None:
    """Durations in the report use the largest fitting unit, without a trailing ``.0``."""
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("span", "step"), [(0.141, 0.02), (1.0, 0.2), (7.0, 1.0), (45.0, 10.0), (0.0, 1.0)]
)
def test_timeline_ticks_are_one_two_or_five_times_a_power_of_ten(span: float, step: float) -> None:
    """The axis puts about eight ticks on the span, at round spacings."""
    assert nice_step(span) == pytest.approx(step)
