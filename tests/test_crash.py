"""kill -9 in the middle of real runs, then run again: the library must be consistent."""

from __future__ import annotations

import random
import signal

from .consistency import consistent, files_accounted_for
from .libenv import LibraryEnv
from .shared import populate, stopped_run

EXTS = ["flac", "ogg", "mp3"]


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
        code = stopped_run(env, op, signal.SIGKILL, rng.uniform(0.05, 0.7))
        killed += code == -signal.SIGKILL
        files_accounted_for(env, env.incoming, env.lib_path)
    assert killed >= 5, "the runs must really be killed mid-way for this test to mean anything"
    assert env.beet_ids("unmarked:true"), "kills left work to do"

    final = env.beet("process-unmarked")
    assert "0 failed" in final.stdout
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)
