"""The ``qtforge`` command line, driven as a user would: click's runner, and a few real
processes (a pipe, a terminal, Ctrl-C)."""

from __future__ import annotations

import csv
import json
import logging
import os
import pty
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import PROCESS_TIMEOUT, QTFORGE, invoke, plain_environment

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# A plugin module written next to the test workflows: their `plugins` section loads it.
PLUGINS = """
import time

import anyio


class Steps:
    plugin_id = "steps"

    def echo(self, context):
        return {"seen": dict(context.inputs)}

    def flaky(self, context):
        if context.attempt < 3:
            raise RuntimeError(f"flaky failure {context.attempt}")
        return {"attempts": context.attempt}

    def boom(self):
        raise ValueError("kaboom")

    def nap(self, seconds, context):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not context.cancelled:
            context.report_progress(1 - (deadline - time.monotonic()) / seconds)
            time.sleep(0.02)
        return {"napped": seconds}

    async def stubborn(self):
        with anyio.CancelScope(shield=True):  # a step that refuses to be cancelled
            await anyio.sleep(20)
"""

WORKFLOWS = {
    "echo.yaml": """\
        id: echo
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: echo, plugin: steps, method: echo, parameters: {fixed: 1}}
        """,
    "retry.yaml": """\
        id: retry
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: flaky, plugin: steps, method: flaky, max_retries: 3, retry_delay: 10}
        """,
    "fail.yaml": """\
        id: fail
        mode: parallel
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: first, plugin: steps, method: echo}
          - {id: broken, plugin: steps, method: boom, dependencies: [first]}
          - {id: after, plugin: steps, method: echo, dependencies: [broken]}
        """,
    "slow.yaml": """\
        id: slow
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: nap, plugin: steps, method: nap, parameters: {seconds: 20}}
          - {id: after, plugin: steps, method: echo, dependencies: [nap]}
        """,
    "stubborn.yaml": """\
        id: stubborn
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: stubborn, plugin: steps, method: stubborn}
        """,
    "live.yaml": """\
        id: live
        mode: parallel
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: nap, plugin: steps, method: nap, parameters: {seconds: 0.6}}
          - {id: flaky, plugin: steps, method: flaky, max_retries: 3, retry_delay: 50}
        """,
    "bad.yaml": """\
        id: bad
        plugins: ["cli_test_plugins:Steps"]
        steps:
          - {id: a, plugin: steps, method: echo, timout: 5}
          - {id: b, plugin: steps, method: shout, dependencies: [c]}
          - {id: c, plugin: nobody, method: echo}
        """,
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory holding the example pipeline, the test plugins and the test workflows,
    made the current directory; ``sys.path`` and ``sys.modules`` are restored afterwards."""
    for name in ("data_processing.yaml", "input.csv"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    (tmp_path / "cli_test_plugins.py").write_text(PLUGINS, encoding="utf-8")
    for name, text in WORKFLOWS.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("cli_test_plugins", None)






def event_kinds(stdout: str) -> list[tuple[str, str]]:
    """(kind, subject) of each event line of the plain output."""
    return [
        (line.split()[1], line.split()[2])
        for line in stdout.splitlines()
        if line.startswith("+") and line.split()[0].endswith("s")
    ]


# -- run -----------------------------------------------------------------------------


def test_run_the_example_pipeline(workdir: Path) -> None:
    """``qtforge run data_processing.yaml`` runs the example pipeline: one line per event,
    a summary table, exit 0, and the normalised ``output.csv``."""
    result = invoke("run", "data_processing.yaml")
    assert result.exit_code == 0, result.output
    steps = ["load", "validate", "transform", "save"]
    expected = [("workflow.started", "data_processing")]
    for step in steps:
        expected += [("step.started", step), ("step.completed", step)]
    assert event_kinds(result.stdout) == [*expected, ("workflow.completed", "data_processing")]
    assert "step.completed save progress=100 attempt=1 duration_ms=" in result.stdout
    assert "data_processing: completed in" in result.stdout
    for step in steps:
        assert f"{step} " in result.stdout.split("completed in")[1]
    with open(workdir / "output.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["station", "date", "temperature_c", "humidity_pct", "wind_kmh"]
    assert len(rows) == 9


def test_run_json_prints_only_the_results(workdir: Path) -> None:
    """``--json`` prints the results dictionary as JSON and nothing else on stdout."""
    result = invoke("run", "data_processing.yaml", "--json")
    assert result.exit_code == 0
    results = json.loads(result.stdout)
    assert results["status"] == "completed"
    assert results["data"]["rows_written"] == 8
    assert results["steps"]["save"]["status"] == "completed"


def test_set_and_data_become_initial_data(workdir: Path) -> None:
    """``--data`` loads a JSON object as initial data; ``--set`` adds keys (JSON values, else
    strings) and wins over it; step parameters win over both."""
    (workdir / "data.json").write_text('{"a": 1, "b": "from file", "fixed": 0}')
    result = invoke(
        "run", "echo.yaml", "--data", "data.json", "--set", "b=2", "--set", "c=text", "--json"
    )
    assert result.exit_code == 0
    seen = json.loads(result.stdout)["steps"]["echo"]["result"]["seen"]
    assert seen == {"a": 1, "b": 2, "c": "text", "fixed": 1}


def test_retries_are_shown_as_they_happen(workdir: Path) -> None:
    """Each failed attempt that will be retried prints a ``step.retrying`` line with the
    attempt, the delay and the error; the table shows the attempts used."""
    result = invoke("run", "retry.yaml")
    assert result.exit_code == 0
    retrying = [line for line in result.stdout.splitlines() if " step.retrying " in line]
    assert len(retrying) == 2
    assert "step.retrying flaky attempt=1 delay=" in retrying[0]
    assert (
        "error=\"step 'flaky': steps.flaky() raised RuntimeError: flaky failure 1\"" in retrying[0]
    )
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith("flaky "))
    assert row.split()[:4] == ["flaky", "steps.flaky", "completed", "3"]


def test_a_failed_workflow_exits_1_with_the_failure_in_the_summary(workdir: Path) -> None:
    """A failed workflow exits 1; the summary shows the failed step, the pending one cancelled,
    and the error."""
    result = invoke("run", "fail.yaml")
    assert result.exit_code == 1
    kinds = event_kinds(result.stdout)
    assert ("step.failed", "broken") in kinds
    assert kinds[-1] == ("workflow.failed", "fail")
    rows = {
        line.split()[0]: line.split()[2]
        for line in result.stdout.splitlines()
        if line.strip().split(" ")[0] in ("first", "broken", "after")
    }
    assert rows == {"first": "completed", "broken": "failed", "after": "cancelled"}
    assert "ValueError: kaboom" in result.stdout
    assert logging.getLogger("qtforge.engine").level == logging.NOTSET  # quieted only during run


def test_run_refuses_an_invalid_file_with_exit_2(workdir: Path) -> None:
    """``run`` on an invalid file lists every problem on stderr and exits 2 without running."""
    result = invoke("run", "bad.yaml")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[:2] == [
        "bad.yaml:4: steps.a.timout: unknown field 'timout' (did you mean 'timeout'?)",
        "bad.yaml:5: steps.b.method: plugin 'steps' has no method 'shout' (the attribute does "
        "not exist)",
    ]
    assert lines[2].startswith("bad.yaml:6: steps.c.plugin: no plugin 'nobody' is registered")
    assert "'csv_loader'" in lines[2]
    assert "'steps'" in lines[2]
    assert lines[3:] == ["3 problems in bad.yaml"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "novalue"], "'novalue' is not of the form key=value"),
        (["--set", "=1"], "'=1' is not of the form key=value"),
        (["--data", "missing.json"], "cannot read 'missing.json'"),
        (["--data", "list.json"], "'list.json' must hold a JSON object"),
        (["--data", "broken.json"], "'broken.json' is not valid JSON"),
    ],
)
def test_bad_run_options_exit_2(workdir: Path, args: list[str], message: str) -> None:
    """Malformed ``--set`` and ``--data`` values are usage errors: exit 2, saying what is wrong."""
    (workdir / "list.json").write_text("[1, 2]")
    (workdir / "broken.json").write_text("{")
    result = invoke("run", "echo.yaml", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


# -- validate ------------------------------------------------------------------------


def test_validate_a_good_file(workdir: Path) -> None:
    """A valid file: exit 0 and a one-line confirmation."""
    result = invoke("validate", "data_processing.yaml")
    assert result.exit_code == 0
    assert result.stdout == (
        "data_processing.yaml: workflow 'data_processing' is valid (4 steps, sequential)\n"
    )


def test_validate_lists_every_problem_and_exits_1(workdir: Path) -> None:
    """An invalid file: every problem (fields, graph, plugins, methods) and exit 1."""
    result = invoke("validate", "bad.yaml")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(": ")[0] for line in lines[:-1]] == [
        "bad.yaml:4",
        "bad.yaml:5",
        "bad.yaml:6",
    ]
    assert lines[-1] == "3 problems in bad.yaml"


def test_validate_a_missing_file(workdir: Path) -> None:
    """A file that does not exist is one problem: exit 1."""
    result = invoke("validate", "nope.yaml")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "nope.yaml: no such file"


# -- graph ---------------------------------------------------------------------------


def test_graph_formats(workdir: Path) -> None:
    """``graph`` prints Mermaid by default, DOT with ``--format dot``, and writes an SVG when
    ``-o`` names one."""
    mermaid = invoke("graph", "data_processing.yaml")
    assert mermaid.exit_code == 0
    assert mermaid.stdout.splitlines()[1] == "flowchart TD"
    assert "    s0 --> s1" in mermaid.stdout.splitlines()
    dot = invoke("graph", "data_processing.yaml", "--format", "dot")
    assert '    "load" -> "validate";' in dot.stdout.splitlines()
    svg = invoke("graph", "data_processing.yaml", "-o", "graph.svg")
    assert svg.exit_code == 0
    assert (workdir / "graph.svg").read_text().startswith("<svg ")


def test_graph_reads_no_plugins_and_refuses_bad_files(workdir: Path) -> None:
    """``graph`` draws a file whose plugins do not exist, and exits 2 for a broken file."""
    (workdir / "noplugins.yaml").write_text(
        "id: x\nplugins: [not_installed]\nsteps: [{id: a, plugin: nobody, method: m}]\n"
    )
    assert invoke("graph", "noplugins.yaml").exit_code == 0
    result = invoke("graph", "broken.yaml")
    assert result.exit_code == 2
    assert "broken.yaml: no such file" in result.stderr


def test_graph_to_an_unwritable_path_exits_2_with_one_line(workdir: Path) -> None:
    """``graph -o`` into a missing directory names the path on stderr and exits 2, with
    no traceback."""
    result = invoke("graph", "data_processing.yaml", "-o", "missing/graph.svg")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot write 'missing/graph.svg'")
    assert "Traceback" not in result.stderr


# -- plugins -------------------------------------------------------------------------


def test_plugins_lists_installed_plugins_with_signatures() -> None:
    """``plugins`` lists the entry-point plugins, their classes and method signatures."""
    result = invoke("plugins")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "csv_loader  (qtforge_examples.tabular.CsvLoader)" in lines
    assert "    load_file(file_path: str) -> dict[str, Any]" in lines
    assert any(line.startswith("    async process_batch(") for line in lines)
    assert not any("initialize" in line or "shutdown" in line for line in lines)


def test_help_and_version() -> None:
    """``--help`` lists the commands; ``--version`` prints qtforge's version."""
    result = invoke("--help")
    for command in ("run", "validate", "graph", "plugins"):
        assert f"  {command} " in result.stdout
    assert invoke("--version").stdout.startswith("qtforge, version ")


# -- real processes ------------------------------------------------------------------


def test_console_script_in_a_pipe_prints_lines(workdir: Path) -> None:
    """The installed ``qtforge`` script, writing to a pipe, prints plain event lines without
    terminal escape codes, and exits with the workflow's status."""
    ok = subprocess.run(
        [QTFORGE, "run", "data_processing.yaml"],
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        env=plain_environment(),
    )
    assert ok.returncode == 0, ok.stderr
    assert "\x1b[" not in ok.stdout
    assert ok.stdout.startswith("+0.000s workflow.started data_processing execution=")
    failed = subprocess.run(
        [QTFORGE, "run", "fail.yaml"], capture_output=True, text=True, timeout=PROCESS_TIMEOUT
    )
    assert failed.returncode == 1
    assert " step.failed broken " in failed.stdout
    assert failed.stderr == ""  # the engine's own warnings would only repeat the display


def test_ctrl_c_cancels_the_workflow_and_exits_130(workdir: Path) -> None:
    """SIGINT during a run cancels the execution through the engine: the running step and
    the pending one end cancelled, the summary is printed, and the exit status is 130."""
    with subprocess.Popen(
        [QTFORGE, "run", "slow.yaml"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if " step.started nap " in line:
                process.send_signal(signal.SIGINT)
                break
        started = time.monotonic()
        output = "".join(seen) + process.stdout.read()
        assert process.wait(timeout=PROCESS_TIMEOUT) == 130
    assert time.monotonic() - started < 10  # the 20 s step was not waited for
    assert "Interrupted: cancelling the workflow" in output
    kinds = event_kinds(output)
    assert kinds[-3:] == [
        ("step.cancelled", "nap"),
        ("step.cancelled", "after"),
        ("workflow.cancelled", "slow"),
    ]
    assert "slow: cancelled in" in output


def test_a_second_ctrl_c_stops_at_once(workdir: Path) -> None:
    """When a step shields itself from cancellation, a second SIGINT ends the process at
    once with status 130 instead of waiting for the step."""
    with subprocess.Popen(
        [QTFORGE, "run", "stubborn.yaml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Interrupted"):
                process.send_signal(signal.SIGINT)
                break
            if " step.started stubborn " in line:
                process.send_signal(signal.SIGINT)
        started = time.monotonic()
        output = process.stdout.read()
        assert process.wait(timeout=PROCESS_TIMEOUT) == 130
    assert time.monotonic() - started < 10  # the 20 s shielded step was not waited for
    assert "Stopped at once, without waiting for the workflow." in output


def test_terminal_gets_live_progress_bars(workdir: Path) -> None:
    """On a terminal, ``run`` draws progress bars, prints a line per finished step and per
    retry, and ends with the summary table."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [QTFORGE, "run", "live.yaml"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**plain_environment(), "COLUMNS": "120"},
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(timeout=PROCESS_TIMEOUT) == 0
    output = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in output  # drawn with terminal escape codes
    assert "━" in output  # progress bars
    assert "↻ flaky" in output
    assert "attempt 1 failed" in output
    assert "✓ nap" in output
    assert "live: completed in" in output
