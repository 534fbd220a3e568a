"""kill -9 in the middle of real runs, then run again: the library must be consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from .audio import MESSY_TRACKS
from .consistency import consistent, files_accounted_for
from .gates import progress, store
from .libenv import BEET, LibraryEnv

EXTS = ["flac", "ogg", "mp3"]


def populate(env: LibraryEnv, count: int) -> None:
    """``count`` messy tracks, some loose, some in albums, inside and outside the library."""
    for n in range(count):
        tags = dict(MESSY_TRACKS[n % len(MESSY_TRACKS)])
        tags["title"] = f"{tags['title']} {n}"
        tags["tracknumber"] = str(n % 12 + 1)
        where = env.incoming if n % 2 else env.lib_path / "unsorted"
        env.add_track(f"{n:04d}.{EXTS[n % 3]}", tags, where=where)
    # group every 10 items into an album so album rows and moves are exercised too
    items = list(env.lib.items())
    for start in range(0, len(items) // 2, 10):
        env.lib.add_album(items[start:start + 10])


def killed_run(env: LibraryEnv, op: str, rng: random.Random) -> int:
    """Start a real `beet OP` and SIGKILL it once it has done or started a
    random share of its items, read from the job store as another process
    would (committed items plus those with a journaled intent: item-granular,
    see gates.py). Aimed by observed progress, not by elapsed time, so the
    kill lands mid-run on any machine."""
    jobs = store(env)
    newest = jobs.list(1)
    before = newest[0]["job"] if newest else 0
    share = rng.uniform(0.05, 0.7)
    proc = subprocess.Popen([BEET, op], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        job = jobs.list(1)
        if job and job[0]["job"] > before and job[0]["total"]:
            if progress(env, job[0]["job"]) >= max(1, round(share * job[0]["total"])):
                break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


def test_kill_minus_nine_then_rerun(env: LibraryEnv) -> None:
    """Six runs killed at random points; each has all 500 items to move and
    retag (the naming scheme and feat spelling change before every run)."""
    populate(env, 500)
    rng = random.Random(1234)
    schemes = ["$albumartist/$album/$track $title", "by-title/$title ($artist)"]
    killed = 0
    for trial, op in enumerate(["process-unmarked", "rename-unmarked", "process-unmarked",
                                "normalize-unmarked", "process-unmarked", "process-unmarked"]):
        env.configure(paths={"default": schemes[trial % 2], "singleton": schemes[trial % 2]},
                      unmarked={"batch_seconds": 0.1, "feat_format": ["feat.", "ft."][trial % 2]})
        env.beet("unmark", "--all")
        code = killed_run(env, op, rng)
        killed += code == -signal.SIGKILL
        files_accounted_for(env, env.incoming, env.lib_path)
    assert killed >= 5, "the runs must really be killed mid-way for this test to mean anything"
    assert env.beet_ids("unmarked:true"), "kills left work to do"

    final = env.beet("process-unmarked")
    assert "0 failed" in final.stdout
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)
