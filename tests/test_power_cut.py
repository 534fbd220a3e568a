"""Power cuts in the middle of real runs: no file empty or lost, the library consistent.

The music directory, the library and its job store live on the power-cut file
system (tests/powercut.py), or only the music directory; a cross-device move
has its source (or its destination) on the real disk outside it. Each
scenario first runs once uncut, to count the requests of each kind the run
makes (and to check that, uncut, it leaves everything right), then, from the
same starting state, cuts the power after the 1st, the middle and the last of
them, for each kind it aims at (a rename, a data sync, a write to the job
store's log ...), and once just after the run returned. After each cut: mount
again, run the same command again (the recovery), and check what a user
would: every item's file exists and decodes to its samples, no file twice, no
leftover copy, the library consistent (tests/consistency.py).

Tracks are real FLAC, OGG Vorbis and MP3 (tests/fulltracks.py), tagged with
no padding and with titles that grow under normalization, so every tag write
is backed up first (files.py: the backup flushed and renamed into place, its
directory flushed, then the write in place, flushed; the backup removed after
the commit, that removal synced before the journal forgets the write).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from beets.library import Item, Library

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import ITEM, pending

from .consistency import problems
from .fulltracks import EXTS, SampleCheck, full_track
from .libenv import BEET, LibraryEnv
from .powercut import Mount
from .shared import beet_env

ITEMS = 6
SECONDS = 2
MOVE_PATH = ("the move path of issue 18: the destination made durable (link, or fsync'd copy, and a directory "
             "fsync) before the commit, the source removed after it")


class Disk:
    """The music directory and the databases on the power-cut file system,
    the source directory of cross-device moves on the real disk; a snapshot
    of both to start every trial from."""

    def __init__(self, env: LibraryEnv) -> None:
        self.env = env
        self.backing = env.temp_path / "disk"
        self.mnt = env.temp_path / "mnt"
        self.music = self.mnt / "music"
        self.outside = env.temp_path / "outside"
        self.pristine = env.temp_path / "pristine"

    @contextmanager
    def mounted(self, cut: tuple[str, int, str] | None = None) -> Iterator[Mount]:
        with Mount(self.backing, self.mnt, cut) as mount:
            yield mount

    def snapshot(self) -> None:
        self.pristine.mkdir()
        for path in (self.backing, self.outside):
            subprocess.run(["cp", "-a", str(path), str(self.pristine / path.name)], check=True)

    def restore(self) -> None:
        for path in (self.backing, self.outside):
            shutil.rmtree(path)
            subprocess.run(["cp", "-a", str(self.pristine / path.name), str(path)], check=True)

    @contextmanager
    def at_rest(self) -> Iterator[None]:
        """The backing directory at the mount point (a bind mount): the disk
        as it is after the run, read with no file system process in between."""
        subprocess.run(["mount", "--bind", str(self.backing), str(self.mnt)], check=True)
        try:
            yield
        finally:
            self.env.lib._close()
            subprocess.run(["umount", "-l", str(self.mnt)], check=True)


@pytest.fixture
def disk(env: LibraryEnv) -> Iterator[Disk]:
    disk = Disk(env)
    disk.outside.mkdir()
    yield disk
    subprocess.run(["umount", "-l", str(disk.mnt)], check=False, capture_output=True)  # after a failure


def populate(disk: Disk, where: Path, directory: Path | None = None, databases: Path | None = None,
             **unmarked: object) -> None:
    """``ITEMS`` tracks at ``where`` in a library on the file system (its
    music directory and its databases too, unless ``directory`` or
    ``databases`` say where else)."""
    env = disk.env
    directory = directory or disk.music
    library = (databases or disk.mnt) / "library.db"
    with disk.mounted():
        env.lib = Library(str(library), str(directory))
        env.configure(library=str(library), directory=str(directory),
                      unmarked={"feat_format": "featuring", **unmarked})
        for n in range(ITEMS):
            tags = {"title": f"Track {n} ft Guest {n}", "artist": "Main Artist", "album": "Noise"}
            path = full_track(where / f"{n:02d}.{EXTS[n % len(EXTS)]}", tags, padding=0, seconds=SECONDS)
            env.lib.add(Item.from_path(str(path)))
        env.lib._close()
    disk.snapshot()


def damage(disk: Disk, check: SampleCheck) -> list[str]:
    """What is wrong on the disk at rest, in words (empty: nothing)."""
    env = disk.env
    found = [f"{kind}: {cases[:4]}" for kind, cases in problems(env, disk.music, disk.outside).items() if cases]
    items = list(env.lib.items())
    if len(items) != ITEMS:
        found.append(f"{ITEMS - len(items)} library entries lost")
    paths = [path for item in items if (path := Path(os.fsdecode(item.path))).exists()]
    found += [f"does not decode to its samples: {p.name} ({p.stat().st_size} bytes)" for p in check.damaged(paths)]
    hidden = [p.name for root in (disk.music, disk.outside) for p in root.rglob(".*")]
    if hidden:
        found.append(f"leftover hidden files: {hidden}")
    return found


@dataclass
class Scenario:
    op: str
    aims: list[tuple[str, str]]  # (kind, fnmatch pattern of the path) to count and cut at


def start(disk: Disk, op: str) -> subprocess.Popen[bytes]:
    """A real ``beet OP``, its output in a file (a pipe nobody reads could stop it)."""
    with open(disk.env.temp_path / "run.log", "ab") as log:
        return subprocess.Popen([BEET, op], env=beet_env(disk.env), stdout=log, stderr=subprocess.STDOUT)


def count_of(disk: Disk, op: str, kind: str, pattern: str, check: SampleCheck) -> int:
    """How many requests of ``kind`` on paths matching ``pattern`` a whole
    run makes; the run, uncut, must leave everything right."""
    disk.restore()
    with disk.mounted((kind, 10**9, pattern)) as mount:  # a cut point never reached: it only counts
        proc = start(disk, op)
        assert not mount.wait_cut(proc)
    assert proc.returncode == 0, (disk.env.temp_path / "run.log").read_text()[-2000:]
    with disk.at_rest():
        assert damage(disk, check) == [], "the uncut run must leave everything right"
    return mount.counts()["matched"]


def cut_points(count: int) -> list[int]:
    """The first, the middle and the last (none of a kind the run never makes)."""
    return sorted({1, (count + 1) // 2, count}) if count else []


def cut_trial(disk: Disk, op: str, cut: tuple[str, int, str] | None, check: SampleCheck) -> list[str]:
    """One cut (``None``: just after the run returned) and the recovery run
    after it; what is wrong then. A run that ends before its cut point (a
    count that depends on timing, such as writes to the job store's log)
    gets its cut just after it returned."""
    disk.restore()
    with disk.mounted(cut) as mount:
        proc = start(disk, op)
        if mount.wait_cut(proc):
            mount.finish_cut(proc)
        else:
            assert proc.returncode == 0, (disk.env.temp_path / "run.log").read_text()[-2000:]
            mount.cut_now()
    with disk.mounted():
        again = disk.env.beet(op, check=False)
    found = [] if again.returncode == 0 else [(f"the run after the cut exited {again.returncode}: "
                                               f"{again.stderr.strip()[-300:]}")]
    with disk.at_rest():
        found += damage(disk, check)
    return found


def run_cuts(disk: Disk, scenario: Scenario) -> None:
    check = SampleCheck(SECONDS)
    failures, trials = [], 0
    for kind, pattern in scenario.aims:
        count = count_of(disk, scenario.op, kind, pattern, check)
        for n in cut_points(count):
            trials += 1
            print(f"cut after {kind} #{n} of {count} on {pattern}")
            for problem in cut_trial(disk, scenario.op, (kind, n, pattern), check):
                failures.append(f"cut after {kind} #{n} of {count} on {pattern}: {problem}")
    trials += 1
    print("cut just after the run returned")
    for problem in cut_trial(disk, scenario.op, None, check):
        failures.append(f"cut just after the run returned: {problem}")
    print(f"{scenario.op}: {trials} cuts, {ITEMS} items each")
    assert trials >= 3, f"too few cut points: the run made hardly any of {scenario.aims}"
    assert failures == [], "\n".join(failures)


# Batches of two: a run commits three times, and each commit becomes durable
# when the next one starts (SQLite fsyncs the directory after creating its
# rollback journal: the previous journal's unlink is then synced too). With
# one batch, the one commit is never durable before the run ends, and every
# cut leaves the library as it was.
BATCHES = {"batch_size": 2, "batch_seconds": 60}
MUSIC = "/music/*"
STORE_LOG = "/library.db-unmarked.db-wal"
LIBRARY_SYNC = ("fsync", "/library.db")  # beets' commits (rollback journal, synchronous=FULL)


def test_a_cut_during_a_rename_run_loses_nothing(disk):
    populate(disk, disk.music / "pool", **BATCHES)
    run_cuts(disk, Scenario("rename-unmarked", [("rename", MUSIC), ("link", MUSIC), ("unlink", MUSIC), LIBRARY_SYNC]))


def test_a_cut_during_a_rename_run_with_only_the_music_on_the_file_system_loses_nothing(disk):
    """The library and the job store on the real disk: every commit is durable at once."""
    populate(disk, disk.music / "pool", databases=disk.outside, **BATCHES)
    run_cuts(disk, Scenario("rename-unmarked", [("rename,link", MUSIC), ("unlink", MUSIC)]))


def test_a_cut_during_a_cross_device_move_loses_nothing(disk):
    populate(disk, disk.outside, **BATCHES)
    run_cuts(disk, Scenario("rename-unmarked", [("create", MUSIC), ("fsync", MUSIC), ("rename", MUSIC), LIBRARY_SYNC]))


def test_a_cut_during_a_move_off_the_file_system_loses_nothing(disk):
    """The reverse: the files on the file system, the music directory on the real disk."""
    populate(disk, disk.music / "pool", directory=disk.outside / "library", **BATCHES)
    run_cuts(disk, Scenario("rename-unmarked", [("unlink", MUSIC), LIBRARY_SYNC]))


def test_a_cut_during_a_backed_up_tag_write_loses_nothing(disk):
    populate(disk, disk.music / "pool", **BATCHES)
    run_cuts(disk, Scenario("normalize-unmarked", [("fsync", MUSIC), ("rename", MUSIC), LIBRARY_SYNC]))


def test_a_journal_entry_is_on_disk_before_the_file_change_it_describes(disk):
    """Cut just after the first file change of a run (a rename, or the link
    of a move): the intent that describes it must be in the job store."""
    populate(disk, disk.music / "pool", **BATCHES)
    with disk.mounted(("rename,link", 1, MUSIC)) as mount:
        proc = start(disk, "rename-unmarked")
        assert mount.wait_cut(proc), "the run ended before its first move"
        mount.finish_cut(proc)
    with disk.at_rest():
        moves = [i for i in pending(JobStore(store_path(disk.env.lib))) if i.kind == ITEM]
    assert moves, f"no move journaled when the power went, after {mount.cut_at}"


def test_a_cut_after_a_journal_commit_loses_nothing(disk):
    populate(disk, disk.music / "pool", **BATCHES)
    run_cuts(disk, Scenario("process-unmarked", [("write", STORE_LOG), ("fsync", STORE_LOG)]))


def test_a_cut_around_a_batch_commit_loses_nothing(disk):
    populate(disk, disk.music / "pool", **BATCHES)
    run_cuts(disk, Scenario("process-unmarked", [LIBRARY_SYNC, ("fsyncdir", "/")]))
