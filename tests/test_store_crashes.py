"""Crash tests of the SQLite store: SIGTERM, SIGKILL at seeded random moments (again and
again for one execution), and a store that fills up while an execution resumes.

After every interruption the file must pass ``PRAGMA integrity_check``; once the execution
completes, no step the store had completed ran again, every step completed exactly once
in the record, and the final data is what an uninterrupted run gives.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from _crash import STEPS, Steps, child, manager_with, query, spawn, uninterrupted_data
from test_store import fill_up

from qtforge import PluginErrorCode
from qtforge.orchestration import AsyncPluginOrchestrator
from qtforge.store import SQLiteStore

STEP_IDS = [f"s{i}" for i in range(STEPS)]


@dataclass(frozen=True)
class Interruption:
    """What the store and the side-effect log held when a run was cut short."""

    how: str  # for failure messages
    done: frozenset[str]  # the steps the store had completed
    ran: int  # lines in the side-effect log


def has_table(db: Path, name: str) -> bool:
    return bool(query(db, f"SELECT 1 FROM sqlite_master WHERE name = '{name}'"))


def survey(db: Path, log: Path, how: str) -> Interruption:
    """Check that the file is sound after an interruption, and note what it holds."""
    if not db.exists():  # killed before it created the store
        return Interruption(how, frozenset(), 0)
    assert query(db, "PRAGMA integrity_check") == [("ok",)], how
    done: frozenset[str] = frozenset()
    if has_table(db, "step_runs"):
        completed = query(db, "SELECT step_id FROM step_runs WHERE status = 'completed'")
        done = frozenset(step for (step,) in completed)
    ran = len(log.read_text().splitlines()) if log.exists() else 0
    return Interruption(how, done, ran)


def execution(db: Path) -> tuple[str, str] | None:
    """The stored execution's id and status; None if none was recorded."""
    if not db.exists() or not has_table(db, "executions"):
        return None
    found = query(db, "SELECT execution_id, status FROM executions")
    assert len(found) <= 1, found
    return found[0] if found else None


def assert_ran_once(
    db: Path,
    log: Path,
    interruptions: Sequence[Interruption],
    pads: dict[str, int] | None = None,
    shape: str = "chain",
) -> None:
    """The invariants of an execution completed after `interruptions`: a sound file, the
    data of an uninterrupted run, no step run again once the store had it completed,
    every step completed exactly once in the record, and every run of a step (its side
    effect) on record as one of its attempts, all but the last abandoned."""
    where = f"after {[i.how for i in interruptions]}"
    assert query(db, "PRAGMA integrity_check") == [("ok",)], where
    (eid, status, data, resumes), = query(
        db, "SELECT execution_id, status, data, resumes FROM executions"
    )  # fmt: skip
    assert status == "completed", where
    assert json.loads(data) == uninterrupted_data(pads, shape), where
    runs = [line.split() for line in log.read_text().splitlines()]
    assert {key for _, key in runs} == {f"{eid}/{step}" for step in STEP_IDS}, where
    for interruption in interruptions:
        again = interruption.done & {step for step, _ in runs[interruption.ran :]}
        assert not again, f"completed steps {sorted(again)} ran again after {interruption.how}"
    completions = query(
        db, "SELECT step_id, count(*) FROM events WHERE type = 'StepCompleted' GROUP BY 1"
    )
    assert sorted(completions) == [(step, 1) for step in STEP_IDS], where
    assert query(db, "SELECT count(*) FROM events WHERE type = 'ExecutionResumed'") == [(resumes,)]
    attempts = query(db, "SELECT step_id, attempt, status FROM step_attempts ORDER BY 1, 2")
    for step in STEP_IDS:
        mine = [(number, outcome) for step_id, number, outcome in attempts if step_id == step]
        assert mine == [
            *((n, "abandoned") for n in range(1, len(mine))),
            (len(mine), "succeeded"),
        ], f"{step} {where}"
        assert 1 <= sum(ran == step for ran, _ in runs) <= len(mine), f"{step} {where}"


# -- SIGTERM ------------------------------------------------------------------------------


def step_status(db: Path, step: str) -> str | None:
    """`step`'s status read through a read-only connection; None if not readable yet."""
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:  # not created yet
        return None
    try:
        found = con.execute("SELECT status FROM step_runs WHERE step_id = ?", (step,)).fetchall()
    except sqlite3.Error:  # no schema yet
        return None
    finally:
        con.close()
    return str(found[0][0]) if found else None


def wait_until_completed(db: Path, step: str, process: subprocess.Popen[str]) -> None:
    """Poll the store until it shows `step` completed, while `process` runs."""
    deadline = time.monotonic() + 30
    while step_status(db, step) != "completed":
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{step} did not complete within 30 s"
        time.sleep(0.01)


def test_sigterm_mid_run_leaves_a_sound_file_and_a_resumable_execution(tmp_path: Path) -> None:
    """A child SIGTERMed once the store shows s2 completed (s3 never returns) dies,
    leaving a sound file and a running execution that another process resumes to the
    data of an uninterrupted run without re-running s0..s2."""
    db, log = tmp_path / "runs.db", tmp_path / "side_effects.log"
    with spawn(db, log, "asyncio", "start", HOLD_IN_STEP="s3") as process:
        wait_until_completed(db, "s2", process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == -signal.SIGTERM, stderr
    interruption = survey(db, log, "SIGTERM")
    assert interruption.done == {"s0", "s1", "s2"}
    eid, status = execution(db) or ("", "")
    assert status == "running"
    resumed = child(db, log, "trio", eid)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == uninterrupted_data()
    assert_ran_once(db, log, [interruption])


# -- SIGKILL at random moments, several times per execution --------------------------------

SEED = 30
KILLS = 3  # at most, per execution; then a child runs it to its end
CRASH_POINTS = {"attempt_started": STEPS, "step_completed": STEPS, "in_commit": 2 * STEPS + 2}
BACKENDS = ("asyncio", "trio")
PAUSE = 0.01  # seconds before and after each side effect: a run takes ~0.15 s + startup


@dataclass(frozen=True)
class Plan:
    """How one child dies: at the n-th pass of a crash point (``QTFORGE_CRASH_AT``), by
    SIGKILL a delay after its orchestrator is open, or not at all (neither)."""

    backend: str
    crash_at: str | None = None
    after: float | None = None


def draw(rng: random.Random) -> Plan:
    backend = rng.choice(BACKENDS)
    if rng.random() < 0.5:
        point = rng.choice(sorted(CRASH_POINTS))
        return Plan(backend, crash_at=f"{point}:{rng.randint(1, CRASH_POINTS[point])}")
    return Plan(backend, after=round(rng.uniform(0.0, 0.3), 3))


def run_child(db: Path, log: Path, command: str, plan: Plan, shape: str) -> tuple[int, str]:
    """Run one child under `plan`, on a workflow of `shape`; its return code and stderr."""
    if plan.after is None:
        env = {"QTFORGE_CRASH_AT": plan.crash_at} if plan.crash_at else {}
        done = child(db, log, plan.backend, command, SHAPE=shape, **env)
        return done.returncode, done.stderr
    pacing = {"READY": "1", "PAUSE": str(PAUSE), "SHAPE": shape}
    with spawn(db, log, plan.backend, command, **pacing) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
        try:
            process.wait(timeout=plan.after)
        except subprocess.TimeoutExpired:
            process.kill()
        _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr


@pytest.mark.parametrize(
    ("shape", "iteration"), [*(("chain", i) for i in range(6)), *(("diamond", i) for i in range(4))]
)
def test_sigkills_at_random_moments_until_done_keep_the_store_sound(
    tmp_path: Path, shape: str, iteration: int
) -> None:
    """SIGKILLed up to three times in a row at seeded random moments (a crash point or a
    delay) and resumed each time, an execution (a chain, or parallel branches and a
    join) keeps a sound file after every kill and ends as an uninterrupted run, no
    completed step run again."""
    rng = random.Random(SEED * 1000 + iteration + (100 if shape == "diamond" else 0))
    plans = [*(draw(rng) for _ in range(KILLS)), Plan(rng.choice(BACKENDS))]
    db, log = tmp_path / "runs.db", tmp_path / "side_effects.log"
    interruptions: list[Interruption] = []
    command = "start"
    for number, plan in enumerate(plans):
        how = f"child {number} ({command}) under {plan}"
        returncode, stderr = run_child(db, log, command, plan, shape)
        assert returncode in (0, -signal.SIGKILL), f"{how}: {stderr}"
        interruption = survey(db, log, how)
        found = execution(db)
        if found is not None and found[1] == "completed":  # perhaps before its kill came
            break
        assert returncode == -signal.SIGKILL, f"{how} exited but did not complete: {stderr}"
        assert found is None or found[1] == "running", how
        command = "start" if found is None else found[0]  # killed before it was recorded
        interruptions.append(interruption)
    assert_ran_once(db, log, interruptions, shape=shape)


# -- a full store while resuming ------------------------------------------------------------

BIG = 3000  # characters of padding: a result that needs a page of its own


@pytest.mark.parametrize(
    "padded",
    [
        pytest.param(STEP_IDS, id="every-result-big"),
        pytest.param(["s2"], id="only-s2-result-big"),
    ],
)
@pytest.mark.anyio
async def test_a_store_filling_up_during_resume_fails_cleanly_then_resumes_once_freed(
    tmp_path: Path, padded: list[str]
) -> None:
    """A resume whose store has no room for s2's result answers or ends with
    ResourceExhausted and leaves a sound file; once space is freed, resuming again
    completes the execution as an uninterrupted run, s0 and s1 never run again."""
    pads = dict.fromkeys(padded, BIG)
    db, log = tmp_path / "runs.db", tmp_path / "side_effects.log"
    killed = child(
        db, log, "asyncio", "start", QTFORGE_CRASH_AT="step_completed:2", PADS=json.dumps(pads)
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    interruptions = [survey(db, log, "SIGKILL after s1 completed")]
    eid, _ = execution(db) or ("", "")
    store = SQLiteStore(db)
    async with AsyncPluginOrchestrator(manager_with(Steps(log, pads=pads)), store=store) as engine:
        await fill_up(store, 0)
        full = await engine.resume_workflow(eid)
        ended = await engine.get_workflow_status(eid) if full else None
        interruptions.append(survey(db, log, "a full store"))
        await fill_up(store, 10_000)
        resumed = await engine.resume_workflow(eid)
    if ended is None:
        assert full.error().code is PluginErrorCode.ResourceExhausted
    else:
        status = ended.value()
        assert (status["status"], status["error_code"]) == ("failed", "ResourceExhausted")
    assert resumed, resumed.error()
    assert_ran_once(db, log, interruptions, pads)
