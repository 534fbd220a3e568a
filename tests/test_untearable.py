"""kill -9 in the middle of tag writes that have to move megabytes: no track may lose a sample.

Full-length tracks (tests/fulltracks.py) saved with zero padding, titles that
grow under normalization ("X ft Y" -> "X featuring Y"): every tag write needs
a bigger tag than the file has room for. Real ``beet`` processes are killed
just after they start writing a file (aimed by the tag-write intents the
engine journals before each write, as another process sees them), and after
each kill every audio file must decode to exactly its original samples.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from beets.library import Item

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import pending

from .consistency import consistent, files_accounted_for
from .fulltracks import EXTS, SampleCheck, full_track
from .libenv import BEET, LibraryEnv, audio_files

KILLS = 20  # kills that must land mid-run


def temps(root: Path) -> list[Path]:
    """Backups of the safe tag write (``.<name>.unmarked-<random>.bak``), and
    temp files of its copy route in older releases (``.tmp``)."""
    return sorted(p for suffix in ("tmp", "bak") for p in root.rglob(f"*.unmarked-*.{suffix}")
                  if p.name.startswith("."))


def populate(env: LibraryEnv, count: int, seconds: int | None = None) -> None:
    """``count`` full-length tracks, formats interleaved, titles that grow."""
    pool = env.lib_path / "pool"
    extra = {} if seconds is None else {"seconds": seconds}
    for n in range(count):
        tags = {"title": f"Track {n} ft Guest {n}", "artist": "Main Artist", "album": "Noise"}
        path = full_track(pool / f"{n:03d}.{EXTS[n % len(EXTS)]}", tags, padding=0, **extra)
        env.lib.add(Item.from_path(str(path)))


@dataclass
class Trials:
    """What the kills did."""

    runs: int = 0
    landed: int = 0  # killed while the job was still running
    left_temp: int = 0  # kills that left a temp file (landed inside a copy write)
    damaged: dict[str, int] = field(default_factory=dict)  # item (or file) -> the run whose kill damaged it
    check: SampleCheck = field(default_factory=SampleCheck)

    def line(self) -> str:
        return (f"{self.runs} runs, {self.landed} kills landed mid-run, {self.left_temp} inside a copy write, "
                f"{len(self.damaged)} tracks damaged ({self.check.decoded} decodes)")


def newest_job(store: JobStore) -> int:
    jobs = store.list(1)
    return jobs[0]["job"] if jobs else 0


def killed_run(env: LibraryEnv, op: str, rng: random.Random) -> bool:
    """Start ``beet OP``, SIGKILL it a random moment after it has begun the
    1st-3rd tag write of its job; return whether it died mid-run."""
    store = JobStore(store_path(env.lib))
    before = newest_job(store)
    log = (env.temp_path / "killed-run.log").open("w")
    proc = subprocess.Popen([BEET, op], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.DEVNULL, stderr=log)
    want, seen = rng.randint(1, 3), set()
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and len(seen) < want:
        seen |= {m.entity for m in pending(store) if m.kind == "tags" and m.job > before}
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.015))  # anywhere in that write (a copy write takes ~5-20 ms here)
    proc.send_signal(signal.SIGKILL)
    code = proc.wait()
    log.close()
    job = store.get(newest_job(store)) if newest_job(store) > before else None
    return (code == -signal.SIGKILL and job is not None and job["status"] in ("running", "interrupted")
            and job["current"] < job["total"])


def run_trials(env: LibraryEnv, rng: random.Random, kills: int, max_runs: int) -> Trials:
    """Killed runs until ``kills`` landed mid-run; check every file after each."""
    trials = Trials()
    check = trials.check
    assert check.damaged(audio_files(env.lib_path)) == [], "fixtures decode to their samples"
    left: list[Path] = []
    while trials.landed < kills and trials.runs < max_runs:
        op = "process-unmarked" if trials.runs % 4 == 3 else "normalize-unmarked"
        trials.landed += killed_run(env, op, rng)
        trials.runs += 1
        # This run got as far as writing tags, so its repair had run: the
        # temp files the previous kill left are gone.
        assert [t for t in left if t.exists()] == [], "stale temp files survived the repair"
        left = temps(env.lib_path)
        assert len(left) <= 1, left  # at most the write the kill interrupted
        trials.left_temp += bool(left)
        # A file moves with its item (its new path may still be in the journal).
        owners = {m.dst: f"item {m.entity}" for m in pending(JobStore(store_path(env.lib))) if m.kind == "item"}
        owners.update({item.path: f"item {item.id}" for item in env.lib.items()})
        for path in check.damaged(audio_files(env.lib_path)):
            trials.damaged.setdefault(owners.get(os.fsencode(path), str(path)), trials.runs)
        files_accounted_for(env, env.lib_path)
    return trials


def test_kill_minus_nine_never_tears_a_full_length_track(env: LibraryEnv) -> None:
    # A commit after every item: each killed run keeps what it finished, so
    # the next one starts on files nobody has written yet.
    env.configure(unmarked={"feat_format": "featuring", "batch_seconds": 0})
    populate(env, 60)
    trials = run_trials(env, random.Random(20251129), KILLS, max_runs=2 * KILLS)
    print(trials.line())

    assert trials.damaged == {}, f"files that no longer decode to their samples: {trials.line()}: {trials.damaged}"
    assert trials.landed >= KILLS, f"the kills must land mid-run for this test to mean anything: {trials.line()}"
    final = env.beet("process-unmarked")
    assert "0 failed" in final.stdout
    assert temps(env.lib_path) == []
    assert trials.check.damaged(audio_files(env.lib_path)) == []
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.lib_path)
