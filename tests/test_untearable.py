"""kill -9 in the middle of tag writes that have to move megabytes: no track may lose a sample.

Full-length tracks (tests/fulltracks.py) saved with zero padding, titles that
grow under normalization ("X ft Y" -> "X featuring Y"): every tag write needs
a bigger tag than the file has room for. Real ``beet`` processes are killed
just after they start writing a file (aimed by the tag-write intents the
engine journals before each write, as another process sees them).

The write goes into the file itself behind a backup copy (files.py), so a
kill in the middle may leave a file torn until the next run: after each kill
every file that does not decode to its original samples must have its backup
beside it, and the next run (its repair) must bring it back; after the last
run every audio file decodes to exactly its original samples.
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
from .test_helper import lock_is_free

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
    left_temp: int = 0  # kills that left a backup (landed inside a backed-up write, or before its commit)
    torn: int = 0  # files a kill left torn, each with its backup, for the next run to restore
    damaged: dict[str, int] = field(default_factory=dict)  # item (or file) -> the run whose kill damaged it for good
    check: SampleCheck = field(default_factory=SampleCheck)

    def line(self) -> str:
        return (f"{self.runs} runs, {self.landed} kills landed mid-run, {self.left_temp} left a backup, "
                f"{self.torn} files torn until the next run, {len(self.damaged)} tracks damaged "
                f"({self.check.decoded} decodes)")


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
    # Its helper process dies with it, a moment later: the files are looked at
    # once the library's lock (which both hold) is free, i.e. both are gone.
    deadline = time.monotonic() + 30
    while not lock_is_free(store.lock_path) and time.monotonic() < deadline:
        time.sleep(0.002)
    job = store.get(newest_job(store)) if newest_job(store) > before else None
    return (code == -signal.SIGKILL and job is not None and job["status"] in ("running", "interrupted")
            and job["current"] < job["total"])


def run_trials(env: LibraryEnv, rng: random.Random, kills: int, max_runs: int) -> Trials:
    """Killed runs until ``kills`` landed mid-run; check every file after each:
    a file that does not decode to its samples must have the backup the next
    run restores it from (and the next run's repair must have removed the
    backups the kill before it left)."""
    trials = Trials()
    check = trials.check
    assert check.damaged(audio_files(env.lib_path)) == [], "fixtures decode to their samples"
    left: list[Path] = []
    while trials.landed < kills and trials.runs < max_runs:
        op = "process-unmarked" if trials.runs % 4 == 3 else "normalize-unmarked"
        trials.landed += killed_run(env, op, rng)
        trials.runs += 1
        # This run got as far as writing tags, so its repair had run: the
        # backups the previous kill left are gone (their files put back).
        assert [t for t in left if t.exists()] == [], "stale backups survived the repair"
        left = temps(env.lib_path)
        journaled = {Path(os.fsdecode(m.src)).name for m in pending(JobStore(store_path(env.lib))) if m.kind == "tags"}
        assert all(t.name.split(".unmarked-")[0][1:] in journaled for t in left), (left, journaled)
        trials.left_temp += bool(left)
        # A file moves with its item (its new path may still be in the journal).
        owners = {m.dst: f"item {m.entity}" for m in pending(JobStore(store_path(env.lib))) if m.kind == "item"}
        owners.update({item.path: f"item {item.id}" for item in env.lib.items()})
        for path in check.damaged(audio_files(env.lib_path)):
            if any(t.name.startswith(f".{path.name}.unmarked-") and t.suffix == ".bak" for t in left):
                trials.torn += 1  # the next run restores it (checked: it is damaged no more, or has a backup again)
            else:
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

    assert trials.damaged == {}, f"files torn with no backup to restore them: {trials.line()}: {trials.damaged}"
    assert trials.landed >= KILLS, f"the kills must land mid-run for this test to mean anything: {trials.line()}"
    final = env.beet("process-unmarked")  # after the next run, every file is whole
    assert "0 failed" in final.stdout
    assert temps(env.lib_path) == []
    assert trials.check.damaged(audio_files(env.lib_path)) == [], "a torn file was not restored by the next run"
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.lib_path)
