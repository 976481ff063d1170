"""The ``qtforge`` commands on a store (``run --store``, history, status, resume, cancel,
``graph --execution``), driven as a user would: click's runner, and real processes where
one must crash or be cancelled from outside."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli import PROCESS_TIMEOUT, QTFORGE, invoke, plain_environment

# Written next to the workflows, whose `plugins` section loads it. Each run of a step is
# appended to steps.log in the current directory, to tell which steps ran again.
PLUGINS = """
import time
from pathlib import Path


class Steps:
    plugin_id = "steps"

    def echo(self, context):
        with Path("steps.log").open("a") as log:
            log.write(context.step_id + "\\n")
        return {context.step_id: context.attempt}

    def boom(self):
        raise ValueError("kaboom")

    def nap(self, seconds, context):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not context.cancelled:
            time.sleep(0.02)
        return {"napped": seconds}
"""

WORKFLOWS = {
    "chain.yaml": """\
        id: chain
        plugins: ["cli_store_plugins:Steps"]
        steps:
          - {id: first, plugin: steps, method: echo}
          - {id: second, plugin: steps, method: echo, dependencies: [first]}
          - {id: third, plugin: steps, method: echo, dependencies: [second]}
        """,
    "fail.yaml": """\
        id: fail
        plugins: ["cli_store_plugins:Steps"]
        steps:
          - {id: ok, plugin: steps, method: echo}
          - {id: broken, plugin: steps, method: boom, dependencies: [ok],
             max_retries: 1, retry_delay: 1}
        """,
    "slow.yaml": """\
        id: slow
        plugins: ["cli_store_plugins:Steps"]
        steps:
          - {id: nap, plugin: steps, method: nap, parameters: {seconds: 20}}
          - {id: after, plugin: steps, method: echo, dependencies: [nap]}
        """,
}


def _write_files(folder: Path) -> None:
    (folder / "cli_store_plugins.py").write_text(PLUGINS, encoding="utf-8")
    for name, text in WORKFLOWS.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")




@pytest.fixture(scope="module")
def crashed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder whose runs.db holds one interrupted execution of chain.yaml: the installed
    ``qtforge`` script was killed (SIGKILL) right after committing step ``first``. Returns
    the folder and the execution id."""
    folder = tmp_path_factory.mktemp("crashed")
    _write_files(folder)
    killed = subprocess.run(
        [QTFORGE, "run", "chain.yaml", "--store", "runs.db"],
        cwd=folder,
        env={**plain_environment(), "QTFORGE_CRASH_AT": "step_completed:1"},
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    con = sqlite3.connect(folder / "runs.db")
    try:
        ((execution_id,),) = con.execute("SELECT execution_id FROM executions").fetchall()
    finally:
        con.close()
    return folder, execution_id


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with the test plugins and workflows, made the current directory;
    ``sys.path`` and ``sys.modules`` are restored afterwards."""
    _write_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("cli_store_plugins", None)


@pytest.fixture
def interrupted(workdir: Path, crashed_store: tuple[Path, str]) -> str:
    """A copy of the crashed store (with its write-ahead log) in `workdir`, as runs.db;
    returns the interrupted execution's id."""
    folder, execution_id = crashed_store
    for file in folder.glob("runs.db*"):
        shutil.copy(file, workdir / file.name)
    shutil.copy(folder / "steps.log", workdir / "steps.log")
    return execution_id




def run_stored(workflow: str) -> str:
    """``qtforge run WORKFLOW --store runs.db --json``; returns the execution id."""
    result = invoke("run", workflow, "--store", "runs.db", "--json")
    assert result.exit_code in (0, 1), result.output
    execution_id: str = json.loads(result.stdout)["execution_id"]
    return execution_id


def status_of(execution_id: str) -> dict[str, object]:
    """The ``status --json`` dictionary of a stored execution."""
    result = invoke("status", execution_id, "--store", "runs.db", "--json")
    assert result.exit_code == 0, result.output
    found: dict[str, object] = json.loads(result.stdout)
    return found


# -- run --store ---------------------------------------------------------------------


def test_run_with_a_store_records_and_names_the_execution(workdir: Path) -> None:
    """``run --store`` records the execution; the line output names its id in the first
    event and under the summary, and ``--json`` stays pure JSON carrying the same id."""
    result = invoke("run", "chain.yaml", "--store", "runs.db")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("+0.000s workflow.started chain execution=")
    execution_id = first.split("execution=")[1].split()[0]
    assert f"Execution {execution_id} recorded in runs.db." in result.stdout
    assert status_of(execution_id)["status"] == "completed"

    as_json = invoke("run", "chain.yaml", "--store", "runs.db", "--json")
    results = json.loads(as_json.stdout)
    assert status_of(results["execution_id"])["workflow_id"] == "chain"


def test_run_on_a_terminal_names_the_execution(workdir: Path) -> None:
    """With progress bars (a terminal), ``run --store`` prints the execution id when it
    starts and names it, with the store, under the summary."""
    result = invoke("run", "chain.yaml", "--store", "runs.db", terminal=True)
    assert result.exit_code == 0, result.output
    assert "\x1b[" in result.stdout  # drawn for a terminal
    history = json.loads(invoke("history", "--store", "runs.db", "--json").stdout)
    execution_id = history[0]["execution_id"]
    assert f"execution {execution_id}" in result.stdout.split("✓ first")[0]
    assert f"Execution {execution_id} recorded in runs.db." in result.stdout


BAD_STORES = {
    "not SQLite": "'runs.db' is not a qtforge store (not SQLite)",
    "foreign": "'runs.db' is a SQLite database but not a qtforge store",
    "newer": "'runs.db' has store schema version 99, newer than this qtforge's",
}


def _bad_store(kind: str) -> None:
    if kind == "not SQLite":
        Path("runs.db").write_text("these are not the rows you are looking for\n")
        return
    con = sqlite3.connect("runs.db")
    try:
        if kind == "newer":
            con.execute("PRAGMA application_id = 1364477511")  # qtforge's: "QTFG"
            con.execute("PRAGMA user_version = 99")
        con.execute("CREATE TABLE things (x)")
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("kind", list(BAD_STORES))
@pytest.mark.parametrize(
    "command",
    [
        ["run", "chain.yaml"],
        ["history"],
        ["status", "abc"],
        ["resume", "abc"],
        ["cancel", "abc"],
        ["graph", "--execution", "abc"],
    ],
)
def test_an_unusable_store_is_a_clear_error(workdir: Path, kind: str, command: list[str]) -> None:
    """Every store command refuses a file that is not SQLite, another program's SQLite
    database, or a store of a newer schema: the store's message, exit 2, no traceback,
    and the file left as it was."""
    _bad_store(kind)
    before = Path("runs.db").read_bytes()
    result = invoke(*command, "--store", "runs.db")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: {BAD_STORES[kind]}")
    assert "Traceback" not in result.stderr
    assert Path("runs.db").read_bytes() == before


# -- history -------------------------------------------------------------------------


def test_history_lists_executions_newest_last_with_filters(workdir: Path) -> None:
    """``history`` shows one row per stored execution (id, workflow, status, started,
    duration, resumes), oldest first; --workflow, --status, --since, --until and --limit
    select, and --json prints the same as a list."""
    ids = [run_stored("chain.yaml"), run_stored("fail.yaml"), run_stored("chain.yaml")]
    table = invoke("history", "--store", "runs.db")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "Execution" in line)
    assert header.split() == ["Execution", "Workflow", "Status", "Started", "Duration", "Resumes"]
    rows = [line.split() for line in lines if line.strip().split(" ")[0] in ids]
    assert [row[0] for row in rows] == ids
    assert [row[1:3] for row in rows] == [
        ["chain", "completed"],
        ["fail", "failed"],
        ["chain", "completed"],
    ]
    assert all(row[-1] == "0" for row in rows)

    listed = json.loads(invoke("history", "--store", "runs.db", "--json").stdout)
    assert [entry["execution_id"] for entry in listed] == ids
    assert set(listed[1]) >= {"status", "started_at", "finished_at", "duration_ms", "resumes"}
    assert listed[1]["error_code"] == "ExecutionFailed"

    def select(*options: str) -> list[str]:
        result = invoke("history", "--store", "runs.db", "--json", *options)
        assert result.exit_code == 0, result.output
        return [entry["execution_id"] for entry in json.loads(result.stdout)]

    assert select("--workflow", "chain") == [ids[0], ids[2]]
    assert select("--status", "failed") == [ids[1]]
    between = listed[0]["finished_at"]  # after the first started, before the second did
    assert select("--since", between) == ids[1:]
    assert select("--until", between) == ids[:1]
    assert select("--limit", "2") == ids[1:]
    assert select("--since", "2999-01-01") == []


def test_history_of_an_empty_selection_and_bad_options(workdir: Path) -> None:
    """An empty selection says so (exit 0); a time that is not ISO 8601, an unknown
    status, or a store file that does not exist are usage errors (exit 2)."""
    run_stored("chain.yaml")
    empty = invoke("history", "--store", "runs.db", "--workflow", "nope")
    assert (empty.exit_code, empty.stdout) == (0, "No execution recorded in runs.db matches.\n")
    bad_time = invoke("history", "--store", "runs.db", "--since", "yesterday")
    assert bad_time.exit_code == 2
    assert "'yesterday' is not an ISO 8601 date or time" in bad_time.stderr
    assert invoke("history", "--store", "runs.db", "--status", "lost").exit_code == 2
    missing = invoke("history", "--store", "missing.db")
    assert missing.exit_code == 2
    assert "'missing.db' does not exist" in missing.stderr
    assert not Path("missing.db").exists()


# -- status --------------------------------------------------------------------------


def test_status_of_a_failed_execution(workdir: Path) -> None:
    """``status`` of a failed execution exits 0 and shows its status, progress, error, and
    per step (in workflow order) the status, attempts and error; --json adds
    ``step_details`` to the engine's status dictionary."""
    execution_id = run_stored("fail.yaml")
    result = invoke("status", execution_id, "--store", "runs.db")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"{execution_id}  workflow fail: failed, 100% (2 of 2 steps finished)"
    assert "Error: " in result.stdout
    rows = [line.split() for line in lines if line.strip().split(" ")[0] in ("ok", "broken")]
    assert [row[:4] for row in rows] == [
        ["ok", "steps.echo", "completed", "1"],
        ["broken", "steps.boom", "failed", "2"],
    ]
    assert "ValueError: kaboom" in result.stdout

    found = status_of(execution_id)
    assert found["status"] == "failed"
    assert found["steps"] == {"ok": "completed", "broken": "failed"}
    details = found["step_details"]
    assert isinstance(details, dict)
    assert list(details) == ["ok", "broken"]
    assert details["broken"]["attempts"] == 2
    assert details["broken"]["error_code"] == "ExecutionFailed"


def test_status_of_an_interrupted_execution(interrupted: str) -> None:
    """An execution whose process was killed reads as running, with the step committed
    before the kill completed, the next one running (its start is committed with that
    completion) and the last pending."""
    result = invoke("status", interrupted, "--store", "runs.db")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].endswith(": running, 33% (1 of 3 steps finished)")
    found = status_of(interrupted)
    assert found["steps"] == {"first": "completed", "second": "running", "third": "pending"}


def test_status_of_an_unknown_execution_exits_2(workdir: Path) -> None:
    """An id the store does not hold: a one-line error naming it and the store, exit 2."""
    run_stored("chain.yaml")
    result = invoke("status", "nope", "--store", "runs.db")
    assert result.exit_code == 2
    assert result.stderr == "Error: no execution with id 'nope' in runs.db\n"


# -- resume --------------------------------------------------------------------------


def test_resume_finishes_an_interrupted_execution(interrupted: str) -> None:
    """``resume ID --file`` continues a killed execution with run's display and exit
    status: the step completed before the kill does not run again, the others do, and
    the store records it completed after one resume."""
    result = invoke("resume", interrupted, "--store", "runs.db", "--file", "chain.yaml")
    assert result.exit_code == 0, result.output
    kinds = [line.split()[1:3] for line in result.stdout.splitlines() if line.startswith("+")]
    assert kinds[0] == ["workflow.started", "chain"]
    assert ["step.started", "first"] not in kinds
    assert ["step.completed", "third"] in kinds
    assert kinds[-1] == ["workflow.completed", "chain"]
    assert "chain: completed in" in result.stdout
    assert Path("steps.log").read_text().split() == ["first", "second", "third"]
    listed = json.loads(invoke("history", "--store", "runs.db", "--json").stdout)
    assert [(e["status"], e["resumes"]) for e in listed] == [("completed", 1)]


def test_resume_json_prints_the_results(interrupted: str) -> None:
    """``resume --json`` prints only the results, the restored step's result included."""
    result = invoke("resume", interrupted, "--store", "runs.db", "--file", "chain.yaml", "--json")
    assert result.exit_code == 0
    results = json.loads(result.stdout)
    assert results["execution_id"] == interrupted
    assert results["data"] == {"first": 1, "second": 1, "third": 1}


def test_resume_without_the_plugins_leaves_the_execution_resumable(interrupted: str) -> None:
    """Without --file the file's plugins are not loaded: resume says which plugin is
    missing and exits 2, and the execution stays interrupted, resumable with --file."""
    result = invoke("resume", interrupted, "--store", "runs.db")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert "'steps'" in result.stderr
    assert status_of(interrupted)["status"] == "running"
    resumed = invoke("resume", interrupted, "--store", "runs.db", "--file", "chain.yaml")
    assert resumed.exit_code == 0


def test_resume_refuses_what_it_cannot_resume(workdir: Path) -> None:
    """Resuming a completed or unknown execution, or with the file of another workflow,
    is a one-line error and exit 2."""
    done = run_stored("chain.yaml")
    completed = invoke("resume", done, "--store", "runs.db", "--file", "chain.yaml")
    assert completed.exit_code == 2
    assert completed.stderr.startswith(f"Error: execution {done!r} has already finished")
    unknown = invoke("resume", "nope", "--store", "runs.db")
    assert unknown.exit_code == 2
    assert unknown.stderr == "Error: no execution with id 'nope' in runs.db\n"
    other = invoke("resume", done, "--store", "runs.db", "--file", "fail.yaml")
    assert other.exit_code == 2
    assert other.stderr == (
        f"Error: execution {done!r} ran workflow 'chain', but 'fail.yaml' holds workflow 'fail'\n"
    )


# -- cancel --------------------------------------------------------------------------


def test_cancel_an_interrupted_execution(interrupted: str) -> None:
    """``cancel`` ends an execution whose process died: it reads cancelled, its unrun
    steps cancelled, and it can no longer be resumed."""
    result = invoke("cancel", interrupted, "--store", "runs.db")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Execution {interrupted} cancelled.\n"
    found = status_of(interrupted)
    assert found["status"] == "cancelled"
    assert found["steps"] == {"first": "completed", "second": "cancelled", "third": "cancelled"}
    assert invoke("resume", interrupted, "--store", "runs.db").exit_code == 2


def test_cancel_refuses_finished_and_unknown_executions(workdir: Path) -> None:
    """Cancelling a finished or unknown execution is a one-line error and exit 2."""
    done = run_stored("chain.yaml")
    finished = invoke("cancel", done, "--store", "runs.db")
    assert finished.exit_code == 2
    assert finished.stderr.startswith(f"Error: execution {done!r} has already finished")
    unknown = invoke("cancel", "nope", "--store", "runs.db")
    assert (unknown.exit_code, unknown.stderr) == (
        2,
        "Error: no execution with id 'nope' in runs.db\n",
    )


def test_cancel_a_run_in_another_process(workdir: Path) -> None:
    """``cancel`` of an execution that ``qtforge run --store`` runs in another process:
    that process stops it within seconds, shows it cancelled and exits 130, and the store
    reads cancelled. While it ran, ``status`` read it running and ``resume`` refused it."""
    with subprocess.Popen(
        [QTFORGE, "run", "slow.yaml", "--store", "runs.db"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=plain_environment(),
    ) as process:
        assert process.stdout is not None
        execution_id = None
        for line in process.stdout:
            if " workflow.started " in line:
                execution_id = line.split("execution=")[1].split()[0]
            if " step.started nap " in line:
                break
        assert execution_id is not None
        running = status_of(execution_id)
        held = invoke("resume", execution_id, "--store", "runs.db", "--file", "slow.yaml")
        started = time.monotonic()
        result = invoke("cancel", execution_id, "--store", "runs.db")
        if result.exit_code != 0:
            process.kill()  # rather than wait for the 20 s step
        output = process.stdout.read()
        returncode = process.wait(timeout=PROCESS_TIMEOUT)
    assert running["status"] == "running"
    assert running["steps"] == {"nap": "running", "after": "pending"}
    assert held.exit_code == 2
    assert f"execution {execution_id!r} is running in another process" in held.stderr
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Cancellation of execution {execution_id} requested")
    assert returncode == 130
    assert time.monotonic() - started < 10  # the 20 s step was not waited for
    assert " workflow.cancelled slow " in output
    assert "slow: cancelled in" in output
    found = status_of(execution_id)
    assert found["status"] == "cancelled"
    assert found["steps"] == {"nap": "cancelled", "after": "cancelled"}


# -- graph --execution ---------------------------------------------------------------


def test_graph_coloured_by_a_stored_execution(workdir: Path) -> None:
    """``graph FILE --execution ID --store`` colours each step by its stored status, in
    every format; without FILE it draws the workflow recorded with the execution."""
    execution_id = run_stored("fail.yaml")
    mermaid = invoke("graph", "fail.yaml", "--execution", execution_id, "--store", "runs.db")
    assert mermaid.exit_code == 0
    lines = mermaid.stdout.splitlines()
    assert "    class s0 completed" in lines
    assert "    class s1 failed" in lines
    dot = invoke("graph", "fail.yaml", "--execution", execution_id, "--store", "runs.db",
                 "--format", "dot")  # fmt: skip
    assert '    "broken" [label="broken\\nsteps.boom", fillcolor="#f8d7da", color="#dc3545"];' in (
        dot.stdout.splitlines()
    )
    stored = invoke("graph", "--execution", execution_id, "--store", "runs.db")
    assert stored.stdout == mermaid.stdout
    svg = invoke("graph", "--execution", execution_id, "--store", "runs.db", "-o", "g.svg")
    assert svg.exit_code == 0
    assert "#f8d7da" in Path("g.svg").read_text()


def test_graph_execution_errors(workdir: Path) -> None:
    """``graph`` refuses --execution without --store (and the reverse), an unknown
    execution, and a FILE of another workflow than the execution's: exit 2."""
    execution_id = run_stored("chain.yaml")
    alone = invoke("graph", "chain.yaml", "--execution", execution_id)
    assert alone.exit_code == 2
    assert "--execution and --store go together" in alone.stderr
    assert invoke("graph", "--store", "runs.db").exit_code == 2
    unknown = invoke("graph", "chain.yaml", "--execution", "nope", "--store", "runs.db")
    assert (unknown.exit_code, unknown.stderr) == (
        2,
        "Error: no execution with id 'nope' in runs.db\n",
    )
    other = invoke("graph", "fail.yaml", "--execution", execution_id, "--store", "runs.db")
    assert other.exit_code == 2
    assert "ran workflow 'chain', but 'fail.yaml' holds workflow 'fail'" in other.stderr


def test_help_lists_the_store_commands() -> None:
    """``qtforge --help`` lists history, status, resume and cancel beside run."""
    result = invoke("--help")
    for command in ("run", "history", "status", "resume", "cancel"):
        assert f"  {command} " in result.stdout
