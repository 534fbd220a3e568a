"""The report and the files are true: three ways a run once said one thing and did another.

Each test is a reproduction from the field, through the real ``beet`` command
on real audio:

* every selected item gets an outcome - none is dropped while the summary
  says "completed" (a look-ahead batch was once never consumed when the
  loop ended, with ``batch_seconds: 0``);
* tags that other tools wrote into the files, and that the library does not
  hold, survive a run stopped at any point (the undo and the crash repair
  once rewrote whole files from the library's values);
* a helper process that stops (SIGSTOP) cannot hang the run: Ctrl-C and a
  cancel act within seconds, and the run says why it ended.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mediafile import MediaFile

from .consistency import consistent
from .gates import progress, store, wait_for
from .libenv import BEET, LibraryEnv
from .shared import populate, stopped_run
from .test_helper import alive, helper_pid

EXTS = ["flac", "ogg", "mp3"]
FOREIGN = {"genre": "Field Recording", "comments": "ripped by hand", "lyrics": "la la la"}


def summary_line(out: str, op: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{op}: ") and "processed" in line)


@pytest.mark.parametrize("seconds", [0, 0.02])
def test_every_item_of_a_rename_is_done_or_reported(env: LibraryEnv, seconds: float) -> None:
    ids = populate(env, 60, albums=False)
    env.configure(unmarked={"batch_seconds": seconds})
    run = env.beet("rename-unmarked")
    line = summary_line(run.stdout, "rename-unmarked")
    assert "60 processed, 60 succeeded, 0 failed, 0 skipped" in line, run.stdout
    assert env.beet_ids("unmarked:rename") == [], "every item renamed and marked"
    job = store(env).get(1)
    assert job["current"] == job["total"] == job["succeeded"] == len(ids)
    consistent(env, env.incoming, env.lib_path)


# --- tags the library does not hold ----------------------------------------------


def add_foreign_tags(env: LibraryEnv) -> None:
    """What a tagger or player writes into the files behind beets' back."""
    for item in env.lib.items():
        media = MediaFile(os.fsdecode(item.path))
        for field, value in FOREIGN.items():
            setattr(media, field, value)
        media.save()
        assert item.get("genre", "") == "", "the library does not hold them"


def foreign_lost(env: LibraryEnv) -> list[str]:
    lost = []
    for item in env.lib.items():
        media = MediaFile(os.fsdecode(item.path))
        if any(getattr(media, field) != value for field, value in FOREIGN.items()):
            lost.append(os.fsdecode(item.path))
    return lost


@pytest.mark.parametrize(("how", "share"), [(signal.SIGINT, 0.3), (signal.SIGTERM, 0.5),
                                            (signal.SIGHUP, 0.2), (signal.SIGKILL, 0.4)])
def test_tags_other_tools_wrote_survive_a_stopped_run(env: LibraryEnv, how: signal.Signals, share: float) -> None:
    populate(env, 90, albums=False)
    env.configure(unmarked={"batch_size": 1000, "batch_seconds": 3600})  # one batch: the stop lands in it
    add_foreign_tags(env)
    stopped_run(env, "process-unmarked", how, share)
    if how != signal.SIGKILL:  # (killed, items may point at files moved but not recorded until the next run)
        assert foreign_lost(env) == [], "the stopped run kept what it did not change"
    env.beet("process-unmarked")  # the next run: repair (after kill -9), then the rest
    assert foreign_lost(env) == [], "the repair and the next run kept them too"
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


# --- a helper that stops ------------------------------------------------------------


def stopped_helper_run(env: LibraryEnv) -> tuple[subprocess.Popen[str], int]:
    """A real run whose helper process is stopped (SIGSTOP) with work handed to it."""
    populate(env, 120, albums=False)
    env.configure(unmarked={"batch_size": 1000, "batch_seconds": 3600})
    jobs = store(env)
    proc = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    child = helper_pid(proc.pid)
    os.kill(child, signal.SIGSTOP)  # before it is handed anything: whatever the machine's speed, work waits on it
    wait_for(lambda: (job := jobs.list(1)) and job[0]["status"] == "running" and progress(env, job[0]["job"]) >= 10,
             "the run to hand the helper files", alive=lambda: proc.poll() is None or proc.communicate())
    return proc, child


def finish(proc: subprocess.Popen[str], limit: float) -> tuple[str, str, float]:
    """Wait for the run to end; how long it took (a hang is a failure, not a wait)."""
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run hung for {limit} s with its helper stopped\n{err}") from None
    return out, err, time.monotonic() - start


def cleanup(child: int) -> None:
    if alive(child):
        os.kill(child, signal.SIGKILL)


@contextmanager
def stopped_helper(env: LibraryEnv) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``stopped_helper_run``; afterwards the helper is gone, the next run
    finishes the rest and the library is consistent."""
    proc, child = stopped_helper_run(env)
    try:
        yield proc, child
    finally:
        cleanup(child)
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_ctrl_c_acts_at_once_while_the_helper_is_stopped(env: LibraryEnv) -> None:
    with stopped_helper(env) as (proc, child):
        proc.send_signal(signal.SIGINT)
        out, err, took = finish(proc, 10)
        assert proc.returncode == 130, (out, err)
        assert took < 2.5, f"Ctrl-C took {took:.1f} s"
        assert not alive(child), "the stopped helper is ended with the run"


def test_a_cancel_acts_while_the_helper_is_stopped(env: LibraryEnv) -> None:
    with stopped_helper(env) as (proc, _):
        env.beet("unmarked-jobs", "--cancel", "1")
        out, err, took = finish(proc, 10)
        assert store(env).get(1)["status"] == "cancelled", (out, err)
        assert took < 2.5, f"the cancel took {took:.1f} s"


def test_a_stopped_helper_ends_the_run_with_its_cause(env: LibraryEnv) -> None:
    """Nobody intervenes: the run notices the stopped helper on its own,
    puts its batch back and names the cause."""
    with stopped_helper(env) as (proc, _):
        out, err, _ = finish(proc, 30)
        assert proc.returncode == 1, (out, err)
        assert re.search(r"helper process .*stopped", err), err
        assert "was undone on disk" in err and "Traceback" not in err
    assert [p for p in Path(env.temp_path).rglob(".*.tmp")] == []
