"""An undo stopped at any point (kill -9, Ctrl-C, SIGTERM, a dead server, a
cancel) leaves a consistent library, and the next run finishes it: every
file back where the job found it, its audio and every tag as before (a tag
the library does not hold included), the library's fields and markers as
before; what the stopped undo had already put back is reported skipped.
And an undo of a job that was itself stopped part-way puts back exactly
what that job committed.

Every stop is aimed by what the job store, the journal and the library
show (gates.py), never by the clock: the library's write lock holds a batch's
commit, the job store's write lock holds a committed batch before its report.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from beetsplug.unmarked.journal import ITEM, pending, unreported

from .consistency import consistent, files_accounted_for
from .gates import in_flight, library_write_lock, running_job, store, store_write_lock, wait_for
from .libenv import BEET, LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import beet_env, populate
from .test_helper import without_helper
from .test_undo import foreign_tag, last_job, state
from .test_web_api import wait_status

COUNT, BATCH = 30, 5
ENDED = {"completed", "failed", "cancelled", "interrupted"}
HANDED_OUT, COMMIT_WAITS, BEFORE_REPORT, AFTER_FIRST = (
    "files-handed-out", "commit-waits-on-the-lock", "committed-not-reported", "after-the-first-batch")
POINTS = (HANDED_OUT, COMMIT_WAITS, BEFORE_REPORT, AFTER_FIRST)
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


# --- a library, a job to undo ---------------------------------------------------------


def library(env: LibraryEnv, albums: bool = True) -> None:
    """Messy tracks in several batches, each file with a tag the library does not hold."""
    populate(env, COUNT, albums=albums)
    for item in env.lib.items():
        foreign_tag(Path(os.fsdecode(item.path)), "FOREIGN", f"kept {item.id}")
    env.configure(unmarked={"batch_size": BATCH})


def processed(env: LibraryEnv) -> tuple[dict[int, Any], dict[int, Any], int]:
    """Some items marked before (their markers must come back), then a process
    job over all: the state before it, after it, and its id."""
    env.beet("normalize-unmarked", "id:1..3")
    before = state(env)
    env.beet("process-unmarked", "--force")
    job = last_job(env)
    after = state(env)
    assert all(after[i][0] != before[i][0] for i in before), "every file moved: every undo moves one back"
    return before, after, job


def renamed(env: LibraryEnv) -> set[int]:
    """Items the library marks renamed: the process job marked all, its undo
    takes the marker off as it commits each item (observed from outside)."""
    with sqlite3.connect(env.settings["library"], timeout=30) as conn:
        return {row[0] for row in conn.execute("SELECT entity_id FROM item_attributes WHERE key = 'renamed'")}


def directories(env: LibraryEnv) -> list[str]:
    """Every directory under the library's two roots (the job made some, its undo prunes them)."""
    return sorted(str(p.relative_to(env.temp_path)) for root in roots(env) for p in root.rglob("*") if p.is_dir())


def roots(env: LibraryEnv) -> tuple[Path, Path]:
    return env.incoming, env.lib_path


def start(env: LibraryEnv, *args: str) -> subprocess.Popen[str]:
    """A real ``beet``; SIGINT not inherited ignored (signals.py)."""
    return subprocess.Popen([BEET, *args], env=beet_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(n) for n in path.read_text().split()] if path.exists() else []


# --- holding a job at a point -----------------------------------------------------------


class Aim:
    """Holds a running job at one of ``POINTS`` with the gates (gates.py).

    ``hold()`` before the job starts: the library's write lock. ``arrive()``:
    waits until the job is at the point, and returns how many items it has
    committed (``done``: observed in the library). At ``commit-waits`` and
    ``after-the-first-batch`` the job waits for the library lock at a
    batch's commit, every file of that batch handed out and moved; at
    ``committed-not-reported`` its first batch is committed and the job waits
    for the job store before reporting it. Every commit first journals what
    it will report (journal.Unreported: a write to the job store) before it
    waits for the library."""

    def __init__(self, env: LibraryEnv, point: str, done: Callable[[], int], alive: Callable[[], Any]) -> None:
        self.env, self.point, self.done, self.alive = env, point, done, alive
        self.gate, self.store_gate = library_write_lock(env), store_write_lock(env)

    def hold(self) -> None:
        self.gate.acquire()

    def _batch_moved(self, at_least: int) -> bool:
        """``at_least`` items in flight, every journaled move of theirs made
        (the destination exists): the batch's files are done, its commit is next."""
        moves = [m for m in pending(store(self.env)) if m.kind == ITEM]
        return in_flight(self.env) >= at_least and len(moves) >= at_least and \
            all(os.path.lexists(m.dst) for m in moves)

    def arrive(self) -> int:
        env = self.env
        job = running_job(env, alive=self.alive)["job"]
        if self.point == HANDED_OUT:
            wait_for(lambda: in_flight(env) >= 1, "files handed out", alive=self.alive)
            return 0
        wait_for(lambda: self._batch_moved(BATCH), "the first batch's files moved", alive=self.alive)
        wait_for(lambda: unreported(store(env), job), "the first commit's report journaled", alive=self.alive)
        if self.point == COMMIT_WAITS:
            return 0
        self.store_gate.acquire()  # the commit goes through; the job then waits to journal and report it
        self.gate.release()
        wait_for(lambda: self.done() >= BATCH, "the first batch committed", alive=self.alive)
        if self.point == BEFORE_REPORT:
            return BATCH
        self.gate.acquire()  # the next batch's commit will wait (the job holds no library transaction now)
        self.store_gate.release()
        wait_for(lambda: (store(env).get(job) or {}).get("current", 0) >= BATCH and self._batch_moved(BATCH),
                 "the first batch reported, the second one's files moved", alive=self.alive)
        assert self.done() == BATCH
        return BATCH

    def release(self) -> None:
        self.store_gate.release()
        self.gate.release()


def stop_at(env: LibraryEnv, proc: subprocess.Popen[str], point: str, how: signal.Signals,
            done: Callable[[], int], helper: bool | None = None) -> tuple[int, str, str]:
    """Start-to-stop of a real ``beet`` job: held at ``point``, sent ``how``.
    Returns the items it had committed when stopped, and its output. A signal
    it handles is sent while the gate still holds the commit (the batch in
    flight must be put back, not committed); one held by the job store's gate
    lands when that gate opens."""
    aim = Aim(env, point, done, alive=lambda: proc.poll() is None or pytest.fail(str(proc.communicate())))
    try:
        aim.hold()
        committed = aim.arrive()
        if helper is not None:
            assert bool(children(proc.pid)) == helper, "the helper process runs (or not) as the test says"
        proc.send_signal(how)
        if aim.point == BEFORE_REPORT or how == signal.SIGKILL:
            aim.release()
        out, err = proc.communicate(timeout=120)
    finally:
        aim.release()
    return committed, out, err


def counts(out: str) -> tuple[int, int, int]:
    found = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) skipped", out)
    assert found, out
    return int(found[1]), int(found[2]), int(found[3])


def as_before(before: dict[int, Any], after: dict[int, Any], now: dict[int, Any]) -> set[int]:
    """Items wholly as before the job; every other one must be wholly as the job left it."""
    back = {i for i in now if now[i] == before[i]}
    mixed = [i for i in now if i not in back and now[i] != after[i]]
    assert mixed == [], f"items half put back: {[(i, before[i], now[i]) for i in mixed[:2]]}"
    return back


def skipped_as_before(env: LibraryEnv, undo: int, job: int) -> set[int]:
    """Items an undo reported skipped because they were as before the job already."""
    return {e["item_id"] for e in store(env).item_record(undo)
            if e.get("skipped") and e.get("error") == f"already as before job {job}"}


def finished_undo(env: LibraryEnv, job: int, before: dict[int, Any], dirs: list[str], back: set[int]) -> None:
    """The next run: ``beet unmarked-jobs --undo JOB`` again finishes it; the
    items the stopped one put back (``back``) are reported skipped."""
    again = env.beet("unmarked-jobs", "--undo", str(job))
    assert counts(again.stdout) == (COUNT - len(back), 0, len(back)), again.stdout
    assert skipped_as_before(env, last_job(env), job) == back
    now = state(env)
    assert [i for i in before if now[i] != before[i]] == [], "every item as before the job"
    assert now == before
    consistent(env, *roots(env))
    assert directories(env) == dirs, "the directories as before the job"


# --- the undo stopped from the terminal ------------------------------------------------------


@pytest.mark.parametrize("helper", [True, False], ids=["helper", "one-process"])
@pytest.mark.parametrize("point", POINTS)
def test_kill_9_of_an_undo_then_the_next_run_finishes_it(env: LibraryEnv, point: str, helper: bool) -> None:
    if not helper:
        without_helper(env)
    library(env)
    dirs = directories(env)
    before, _, job = processed(env)
    undone = lambda: COUNT - len(renamed(env))  # noqa: E731
    proc = start(env, "unmarked-jobs", "--undo", str(job))
    committed, _, _ = stop_at(env, proc, point, signal.SIGKILL, undone, helper)
    assert proc.returncode == -signal.SIGKILL
    assert undone() == committed
    files_accounted_for(env, *roots(env))
    finished_undo(env, job, before, dirs, set(range(1, COUNT + 1)) - renamed(env))
    assert re.search(rf"^\s*{job + 1}\s+interrupted\s+undo {job}\b", env.beet("unmarked-jobs").stdout, re.M)


@pytest.mark.usefixtures("sigint_delivered")
@pytest.mark.parametrize("helper", [True, False], ids=["helper", "one-process"])
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("point", POINTS)
def test_ctrl_c_or_sigterm_puts_the_batch_back_and_the_next_run_finishes(
        env: LibraryEnv, point: str, how: signal.Signals, helper: bool) -> None:
    if not helper:
        without_helper(env)
    library(env)
    dirs = directories(env)
    before, after, job = processed(env)
    undone = lambda: COUNT - len(renamed(env))  # noqa: E731
    proc = start(env, "unmarked-jobs", "--undo", str(job))
    committed, out, err = stop_at(env, proc, point, how, undone, helper)
    assert proc.returncode == EXIT[how], (out, err)
    assert "Traceback" not in err, err
    back = as_before(before, after, state(env))
    assert len(back) == undone() == committed, "what was committed stays; the batch in flight is put back"
    assert pending(store(env), kinds=None) == [], "nothing left for a repair"
    consistent(env, *roots(env))
    finished_undo(env, job, before, dirs, back)


# --- the undo of a web job: its server killed, or cancelled ---------------------------------


def served(env: LibraryEnv) -> None:
    web_settings(env)
    env.configure(unmarked={"batch_size": BATCH})


@pytest.mark.parametrize("point", POINTS)
def test_a_web_undo_whose_server_is_killed_is_resumed_by_the_next_server(env: LibraryEnv, point: str) -> None:
    library(env)
    served(env)
    dirs = directories(env)
    before, after, job = processed(env)
    undone = lambda: COUNT - len(renamed(env))  # noqa: E731
    server = beet_web(env)
    aim = Aim(env, point, undone, alive=lambda: server.proc.poll() is None or pytest.fail(server.log()))
    try:
        aim.hold()
        response = server.post(f"/api/jobs/{job}/undo")
        assert response.status_code == 202, response.text
        undo = response.json()["job"]
        committed = aim.arrive()
        server.kill()
    finally:
        aim.release()
        server.stop()
    assert undone() == committed
    files_accounted_for(env, *roots(env))
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, undo, ENDED)
    finally:
        restarted.stop()
    assert summary["status"] == "completed" and summary["resumed"], summary
    assert (summary["succeeded"] + summary["skipped"], summary["failed"]) == (COUNT, 0), summary
    assert state(env) == before
    consistent(env, *roots(env))
    assert directories(env) == dirs
    # The resumed undo's record holds every item it put back: undoing it redoes the whole job.
    redo = env.beet("unmarked-jobs", "--undo", str(undo), check=False)
    assert counts(redo.stdout) == (COUNT, 0, 0), redo.stdout + redo.stderr
    redone = state(env)
    assert [i for i in after if [redone[i][k] for k in (0, 1, 3, 4)] != [after[i][k] for k in (0, 1, 3, 4)]] == []


def test_a_web_undo_cancelled_leaves_the_rest_as_the_job_left_it(env: LibraryEnv) -> None:
    library(env)
    served(env)
    dirs = directories(env)
    before, after, job = processed(env)
    undone = lambda: COUNT - len(renamed(env))  # noqa: E731
    server = beet_web(env)
    try:
        aim = Aim(env, AFTER_FIRST, undone, alive=lambda: server.proc.poll() is None or pytest.fail(server.log()))
        try:
            aim.hold()
            undo = server.post(f"/api/jobs/{job}/undo").json()["job"]
            aim.arrive()  # the first batch put back and reported, the second waits at its commit
            cancel = server.post(f"/api/jobs/{undo}/cancel")
            assert cancel.status_code == 200, cancel.text
        finally:
            aim.release()
        summary = wait_status(server, undo, ENDED)
        assert summary["status"] == "cancelled", summary
        back = as_before(before, after, state(env))
        assert BATCH <= len(back) == summary["succeeded"] < COUNT, (len(back), summary)
        assert summary["current"] < summary["total"] == COUNT
        consistent(env, *roots(env))

        again = server.post(f"/api/jobs/{job}/undo")
        assert again.status_code == 202, again.text
        second = wait_status(server, again.json()["job"], ENDED)
    finally:
        server.stop()
    assert (second["status"], second["succeeded"], second["skipped"]) == ("completed", COUNT - len(back), len(back))
    assert skipped_as_before(env, second["job"], job) == back
    assert state(env) == before
    consistent(env, *roots(env))
    assert directories(env) == dirs


# --- the undo of a job that was itself stopped part-way --------------------------------------


def stopped_job(env: LibraryEnv, point: str, how: signal.Signals) -> tuple[dict[int, Any], int, set[int]]:
    """A process job (from the terminal) stopped at ``point``; the state before
    it, its id, and the items it committed (marked renamed)."""
    library(env, albums=False)  # (album rows are stored before a chunk's items: the gate would hold those)
    env.beet("normalize-unmarked", "id:1..3")
    before = state(env)
    proc = start(env, "process-unmarked", "--force")
    committed, out, err = stop_at(env, proc, point, how, lambda: len(renamed(env)))
    assert len(renamed(env)) == committed, (out, err)
    return before, last_job(env), renamed(env)


@pytest.mark.usefixtures("sigint_delivered")
@pytest.mark.parametrize(("point", "how"), [(AFTER_FIRST, signal.SIGINT), (AFTER_FIRST, signal.SIGKILL),
                                            (BEFORE_REPORT, signal.SIGINT),
                                            (BEFORE_REPORT, signal.SIGKILL)],
                         ids=["ctrl-c-after-the-first-batch", "kill-9-after-the-first-batch",
                              "ctrl-c-committed-not-reported", "kill-9-committed-not-reported"])
def test_the_undo_of_a_stopped_job_puts_back_exactly_what_it_committed(
        env: LibraryEnv, point: str, how: signal.Signals) -> None:
    before, job, committed = stopped_job(env, point, how)
    assert committed, "the job committed something"
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)  # (after kill -9: the repair first)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout) == (len(committed), 0, 0), result.stdout
    now = state(env)
    assert [i for i in before if now[i] != before[i]] == [], "every item as before the job"
    consistent(env, *roots(env))


def test_the_undo_of_a_web_job_resumed_after_its_server_died_puts_back_all_it_did(env: LibraryEnv) -> None:
    """A web job's server is killed -9 with a batch committed, not yet
    reported; the next server resumes the job to its end. Its undo puts back
    every item: those the dead process committed too."""
    library(env, albums=False)
    served(env)
    before = state(env)
    server = beet_web(env)
    aim = Aim(env, BEFORE_REPORT, lambda: len(renamed(env)),
              alive=lambda: server.proc.poll() is None or pytest.fail(server.log()))
    try:
        aim.hold()
        job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        aim.arrive()
        server.kill()
    finally:
        aim.release()
        server.stop()
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, job, ENDED)
    finally:
        restarted.stop()
    assert (summary["status"], summary["succeeded"]) == ("completed", COUNT), summary
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts(result.stdout) == (COUNT, 0, 0), result.stdout
    assert state(env) == before
    consistent(env, *roots(env))


def test_the_undo_of_a_cancelled_web_job_puts_back_what_it_did(env: LibraryEnv) -> None:
    library(env, albums=False)
    served(env)
    before = state(env)
    server = beet_web(env)
    try:
        cancelled_then_undone(env, server, before)
    finally:
        server.stop()


def cancelled_then_undone(env: LibraryEnv, server: Server, before: dict[int, Any]) -> None:
    aim = Aim(env, AFTER_FIRST, lambda: len(renamed(env)), alive=lambda: server.proc.poll() is None)
    try:
        aim.hold()
        job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        aim.arrive()
        assert server.post(f"/api/jobs/{job}/cancel").status_code == 200
    finally:
        aim.release()
    summary = wait_status(server, job, ENDED)
    assert summary["status"] == "cancelled" and 0 < summary["succeeded"] < COUNT, summary
    assert len(renamed(env)) == summary["succeeded"]
    undo = server.post(f"/api/jobs/{job}/undo")
    assert undo.status_code == 202, undo.text
    assert undo.json()["total"] == summary["succeeded"]
    assert wait_status(server, undo.json()["job"], ENDED)["status"] == "completed"
    assert state(env) == before
    consistent(env, *roots(env))


def test_an_undo_killed_run_after_run_is_finished_by_the_next(env: LibraryEnv) -> None:
    """Each run of the undo is killed in its turn, at another point, after
    the runs before had put back some items: the next run still finishes
    it, skipping every item any of them put back."""
    library(env)
    dirs = directories(env)
    before, _, job = processed(env)
    for point in (AFTER_FIRST, BEFORE_REPORT, COMMIT_WAITS, AFTER_FIRST):
        base = COUNT - len(renamed(env))
        proc = start(env, "unmarked-jobs", "--undo", str(job))
        committed, _, _ = stop_at(env, proc, point, signal.SIGKILL, lambda: COUNT - len(renamed(env)) - base)
        assert COUNT - len(renamed(env)) - base == committed, point
        files_accounted_for(env, *roots(env))
    assert len(renamed(env)) == COUNT - 3 * BATCH
    finished_undo(env, job, before, dirs, set(range(1, COUNT + 1)) - renamed(env))
