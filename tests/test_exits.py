"""Files and library agree at every exit; other writers' changes survive (issue 10, cases 2-6).

Real files and real `beet` processes: Ctrl-C (SIGINT) across filesystems, a
library locked past every retry, `beet modify -w` from another process in the
middle of a run, rename then normalize, and `database_change` on mark/unmark.
The fencing guard, a failing journal and resuming are driven in-process.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import beets.context
import pytest
from beets.library import Item
from mediafile import MediaFile

from beetsplug.unmarked.engine import Engine
from beetsplug.unmarked.errors import ClaimLost, StoreError
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import Journal, Unreported, pending, unreported
from beetsplug.unmarked.results import ItemResult, Summary
from beetsplug.unmarked.waves import FIRST_WAVE

from .audio import MESSY_TRACKS, read_tags, write_tags
from .consistency import consistent
from .libenv import LibraryEnv, audio_files, read_only
from .shared import Recorder, engine, start_beet, wait_while_running
from .signals import sigint_ignored

SHM = Path("/dev/shm")

# --- helpers -------------------------------------------------------------------


@cache
def noise_flac(seconds: int = 8) -> Path:
    """A FLAC of stereo noise (~1.4 MB for 8 s): a cross-device copy takes a
    while, so a signal can land in the middle of one."""
    import numpy as np
    import soundfile

    noise = np.random.default_rng(seconds).standard_normal((44100 * seconds, 2)) * 0.2
    folder = tempfile.mkdtemp(prefix="unmarked-noise-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "noise.flac"
    soundfile.write(str(path), noise.clip(-1, 1).astype("float32"), 44100, format="FLAC", subtype="PCM_16")
    return path


def add_noise_tracks(env: LibraryEnv, count: int) -> list[int]:
    ids = []
    for n in range(count):
        path = env.incoming / f"{n:03d}.flac"
        shutil.copyfile(noise_flac(), path)
        tags = dict(MESSY_TRACKS[n % len(MESSY_TRACKS)])
        write_tags(path, {**tags, "title": f"{tags['title']} {n}", "tracknumber": str(n + 1)})
        item = Item.from_path(str(path))
        env.lib.add(item)
        ids.append(item.id)
    return ids


def leftovers(*roots: Path) -> list[Path]:
    """Hidden temp files: beets' partial cross-device copies and our tag-write copies."""
    found = []
    for root in roots:
        found += [p for p in root.rglob(".*") if p.is_file() and (p.name.endswith(".beets") or ".unmarked-" in p.name)]
    return found


def disagreements(env: LibraryEnv, *roots: Path) -> dict[str, list[Any]]:
    """Where library and disk disagree right after a run stopped (before any repair)."""
    items = list(env.lib.items())
    paths = [item.path for item in items]
    on_disk = {os.fsencode(p) for p in audio_files(*roots)}
    found: dict[str, list[Any]] = {
        "items pointing at missing files": [i.id for i in items if not os.path.exists(i.path)],
        "files shared by two items": [p for p in set(paths) if paths.count(p) > 1],
        "orphaned or duplicated files": sorted(on_disk - set(paths)),
        "partial copies or temp files left": leftovers(*roots),
        "file tags not the library's": [],
    }
    for item in items:
        if os.path.exists(item.path):
            if read_tags(Path(os.fsdecode(item.path))).get("title") != [item.title]:
                found["file tags not the library's"].append(item.id)
    return {kind: cases for kind, cases in found.items() if cases}


def job_summary(env: LibraryEnv) -> dict[str, Any]:
    return JobStore(store_path(env.lib)).list(1)[0]


# --- Ctrl-C across filesystems ----------------------------------------------------


@pytest.fixture
def shm_music() -> Iterator[Path]:
    if not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tempfile.gettempdir()).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp dir")
    music = Path(tempfile.mkdtemp(prefix="unmarked-music-", dir=SHM))
    yield music
    shutil.rmtree(music, ignore_errors=True)


def on_shm(env: LibraryEnv, music: Path) -> None:
    """The library's music directory on tmpfs; the incoming files stay on disk."""
    env.configure(directory=str(music))
    env.lib.directory = os.fsencode(music)
    beets.context.set_music_dir(env.lib.directory)  # relative paths expand against it


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_across_filesystems_leaves_library_and_disk_agreeing(shm_music: Path) -> None:
    """Moves into the library are copy + delete; SIGINT lands at random
    instants while moves are pending. After each: every item's file exists,
    none is doubled, no partial copy is left, file tags are the library's."""
    rng = random.Random(10)
    trials, interrupted, bad = 20, 0, {}
    for trial in range(trials):
        music = shm_music / f"trial{trial}"
        music.mkdir()
        with LibraryEnv() as env:
            on_shm(env, music)
            env.configure(unmarked={"batch_seconds": 0.05})
            ids = add_noise_tracks(env, 24)
            store = JobStore(store_path(env.lib))
            proc = start_beet(env, "process-unmarked")
            assert not sigint_ignored(proc.pid), "the run can be interrupted (conftest: sigint_delivered)"
            target = rng.randrange(20)  # aim at the move of a random item, by what the journal shows

            def reached() -> bool:
                moving = any(m.kind == "item" and m.entity == ids[target] for m in pending(store))
                jobs = store.list(1)
                return moving or bool(jobs and jobs[0]["current"] > target)

            if wait_while_running(proc, reached):
                time.sleep(rng.uniform(0, 0.008))
                proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=120)
            interrupted += job_summary(env)["status"] == "cancelled"
            found = disagreements(env, env.incoming, music)
            if found:
                bad[trial] = found
            else:  # the next run finishes the job cleanly
                env.beet("process-unmarked")
                consistent(env, env.incoming, music)
    assert interrupted >= trials // 2, f"only {interrupted} of {trials} runs were interrupted mid-way"
    assert bad == {}, f"{len(bad)} of {trials} interrupted runs left library and disk disagreeing: {bad}"


# --- a library locked past every retry ------------------------------------------------


def test_library_locked_past_all_retries_puts_the_batch_back(env: LibraryEnv) -> None:
    env.configure(timeout=0.2, unmarked={"batch_seconds": 60, "batch_size": 1000})
    for n in range(120):
        tags = MESSY_TRACKS[n % len(MESSY_TRACKS)]
        env.add_track(f"{n:03d}.{['flac', 'ogg', 'mp3'][n % 3]}", {**tags, "title": f"{tags['title']} {n}"})
    before = {item.id: (item.path, item.title) for item in env.lib.items()}
    store = JobStore(store_path(env.lib))
    run = start_beet(env, "process-unmarked")
    assert wait_while_running(run, lambda: bool(pending(store))), run.communicate()
    holder = sqlite3.connect(env.settings["library"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer that outlasts every retry
    try:
        out, err = run.communicate(timeout=120)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert run.returncode == 1, (out, err)
    assert "stayed locked by another process past 6 attempts" in err, err
    assert "the last batch of 120 items was undone on disk (120 files put back); nothing of it was recorded" in err
    assert "nothing was changed" not in err
    after = {item.id: (item.path, item.title) for item in env.lib.items()}
    assert after == before, "the library is as it was"
    assert disagreements(env, env.incoming, env.lib_path) == {}
    assert audio_files(env.lib_path) == [], "every file moved back"
    assert pending(store) == []
    assert env.beet_ids("unmarked:true") == sorted(before)
    env.beet("process-unmarked")
    consistent(env, env.incoming, env.lib_path)


# --- another writer's change during a run ----------------------------------------------

PLUGINS = {
    "slowwrite": '''
import os, time
from beets.plugins import BeetsPlugin

class SlowWrite(BeetsPlugin):
    """Slows every tag write down by $SLOW_WRITE seconds (so a test can act mid-run)."""
    def __init__(self):
        super().__init__()
        self.register_listener("after_write", self.after_write)

    def after_write(self, item, path):
        time.sleep(float(os.environ.get("SLOW_WRITE", "0")))
''',
    "probe": '''
import os
from beets.plugins import BeetsPlugin

class Probe(BeetsPlugin):
    """Appends one line per database_change to $UNMARKED_PROBE."""
    def __init__(self):
        super().__init__()
        self.register_listener("database_change", self.changed)

    def changed(self, lib, model):
        if os.environ.get("UNMARKED_PROBE"):
            with open(os.environ["UNMARKED_PROBE"], "a") as out:
                out.write(f"{type(model).__name__} {model.id}\\n")
''',
}


def with_test_plugins(env: LibraryEnv, *names: str, **settings: Any) -> None:
    folder = env.temp_path / "test-plugins"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.py").write_text(PLUGINS[name])
    env.configure(pluginpath=[str(folder)], plugins=["unmarked", *names], **settings)


def test_a_change_another_program_commits_mid_run_survives(env: LibraryEnv) -> None:
    """`beet modify -w` on an item the run has already worked on (its batch
    not yet committed): neither the library nor the file loses the edit."""
    with_test_plugins(env, "slowwrite", unmarked={"batch_seconds": 60, "batch_size": 1000})
    items = [env.add_track(f"{n:02d}.ogg", {"title": f"  Messy   Title {n} ", "artist": "A  B", "comment": "old"})
             for n in range(40)]
    target = items[0].id  # done first, committed last
    store = JobStore(store_path(env.lib))
    run = start_beet(env, "normalize-unmarked", SLOW_WRITE="0.1")
    assert wait_while_running(run, lambda: any(m.entity == target for m in pending(store))), run.communicate()
    env.beet("modify", "-y", "-w", "title=Edited  by   Hand", "comments=mine", f"id:{target}")
    assert run.poll() is None, "the edit must land before the run commits, or this test shows nothing"
    out, err = run.communicate(timeout=120)

    assert run.returncode == 0, err
    assert "40 succeeded, 0 failed" in out
    item = env.item(target)
    file = MediaFile(item.path)
    assert (item.comments, file.comments) == ("mine", "mine"), "the other program's edit survives"
    assert item.title == "Edited by Hand", "the user's title, normalized from its new state"
    assert file.title == item.title, "the file says what the library says"
    assert item.get("normalized") is not None
    consistent(env, env.incoming)


# --- markers after rename, then normalize ---------------------------------------------


def test_rename_then_normalize_leaves_no_renamed_marker_that_lies(env: LibraryEnv) -> None:
    loose = env.add_tracks((f"loose{i}.ogg", {**tags, "tracknumber": str(i + 1)})
                           for i, tags in enumerate(MESSY_TRACKS))
    album_items = env.add_tracks((f"album{i}.flac", {"title": f"Song {i}", "artist": "The  Band",
                                                      "album": "First  Album ", "tracknumber": str(i + 1)})
                                 for i in range(3))
    album = env.lib.add_album(album_items)
    album.albumartist, album.album = "The  Band", "First  Album "
    album.store()
    env.beet("rename-unmarked")
    assert env.beet_ids("unmarked:rename") == []

    # Normalize one album track only: the album row is normalized, so the
    # other two tracks' destination changes too, though they are not in the run.
    result = env.beet("normalize-unmarked", "title:Song 0")
    assert "1 succeeded" in result.stdout
    result = env.beet("normalize-unmarked")
    assert "0 failed" in result.stdout
    for item in env.lib.items():
        if item.get("renamed") is not None:
            assert item.path == item.destination(), f"item {item.id} is marked renamed but not at its destination"
    stale = env.beet_ids("unmarked:rename")
    assert set(stale) >= {i.id for i in album_items}, "the album's tracks must be moved again"
    assert set(stale) & {i.id for i in loose}, "loose tracks whose titles changed must be moved again"
    env.beet("rename-unmarked")
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


# --- database_change from mark / unmark ------------------------------------------------


def test_mark_and_unmark_tell_other_plugins(env: LibraryEnv) -> None:
    with_test_plugins(env, "probe")
    env.add_tracks((f"t{i}.mp3", tags) for i, tags in enumerate(MESSY_TRACKS))
    probe = env.temp_path / "probe.log"
    extra = {"env": {"UNMARKED_PROBE": str(probe)}}

    def heard() -> list[str]:
        lines = probe.read_text().splitlines() if probe.exists() else []
        probe.unlink(missing_ok=True)
        return lines

    env.beet("mark", "--all", **extra)
    assert len(heard()) == 1, "one database_change for the batch"
    env.beet("mark", "--all", **extra)
    assert heard() == [], "nothing changed, nothing sent"
    env.beet("unmark", "--op", "rename", "artist:Main Artist", **extra)
    lines = heard()
    assert len(lines) == 1 and lines[0].startswith("Item ")


# --- fencing, a failing journal, resuming (in-process) ----------------------------------


class FailingJournal(Journal):
    """The journal's store becomes unusable after ``good`` intents."""

    def __init__(self, store: JobStore, good: int) -> None:
        super().__init__(store, 1)
        self.good = good

    def _spend(self, count: int) -> None:
        if self.good < count:
            raise StoreError("the job store is unreadable (test)")
        self.good -= count

    def intend_many(self, entries: Sequence[tuple[str, int, bytes, bytes]]) -> list[int]:
        self._spend(len(entries))
        return super().intend_many(entries)


def untouched(env: LibraryEnv, before: dict[int, tuple[bytes, str]]) -> None:
    assert {i.id: (i.path, i.title) for i in env.lib.items()} == before, "library as it was"
    assert disagreements(env, env.incoming, env.lib_path) == {}
    assert audio_files(env.lib_path) == []
    assert pending(JobStore(store_path(env.lib))) == []
    assert env.beet_ids("unmarked:true") == sorted(before)


@pytest.mark.parametrize("lost_at", [7, 21], ids=["mid-moves", "at-commit"])
def test_a_lost_claim_stops_forward_work_and_puts_the_batch_back(env: LibraryEnv, lost_at: int) -> None:
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(20)]
    before = {i.id: (i.path, i.title) for i in env.lib.items()}
    calls = 0

    def guard() -> None:  # 20 moves, then the commit: 21 calls in a whole run
        nonlocal calls
        calls += 1
        if calls >= lost_at:
            raise ClaimLost("another process owns this library now (test)")

    sink = Recorder()
    summary = engine(env, "rename", guard=guard).run(ids, sink)

    assert calls == lost_at, "nothing more is tried once the claim is lost"
    assert summary.status == "failed" and sink.summary is summary
    assert summary.error is not None and summary.error.startswith("another process owns this library now (test)")
    assert "undone on disk" in summary.error and "nothing of it was recorded" in summary.error
    untouched(env, before)


def test_an_undo_that_cannot_finish_keeps_its_intents_and_says_so(env: LibraryEnv) -> None:
    """The claim is lost at the commit and the files cannot go back (the
    directory that got their new names became unwritable, so those names
    cannot be removed): the journal keeps those intents, the message says so,
    and the next run settles them."""
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(6)]
    calls = 0
    with ExitStack() as unlock:

        def guard() -> None:  # 6 moves, then the commit
            nonlocal calls
            calls += 1
            if calls == 7:
                unlock.enter_context(read_only(env.lib_path / "Singles"))
                raise ClaimLost("another process owns this library now (test)")

        summary = engine(env, "rename", guard=guard).run(ids, Recorder())
    assert summary.status == "failed" and summary.error is not None
    assert "the last batch of 6 items was undone on disk (0 files put back)" in summary.error
    assert "6 files could not be put back and stay in the journal for the next run to settle" in summary.error
    assert len(pending(JobStore(store_path(env.lib)))) == 6
    env.beet("rename-unmarked")  # repairs first (the files are where the intents say), then renames
    assert env.beet_ids("unmarked:rename") == []
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.fast
def test_album_art_moved_but_not_recorded_goes_back(env: LibraryEnv) -> None:
    """The items' batch commits; the claim is lost when the art's new place is
    to be recorded: the art goes back where the library says it is."""
    old_dir = env.lib_path / "old place"
    items = env.add_tracks(((f"{i}.ogg", {"title": f"Song {i}", "artist": "A", "album": "B"}) for i in range(2)),
                           where=old_dir)
    album = env.lib.add_album(items)
    art = old_dir / "cover.jpg"
    art.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    album.artpath = os.fsencode(art)
    album.store()
    calls = 0

    def guard() -> None:  # 2 moves, the items' commit, the art move, the art's commit
        nonlocal calls
        calls += 1
        if calls == 5:
            raise ClaimLost("another process owns this library now (test)")

    summary = engine(env, "rename", guard=guard).run([i.id for i in items], Recorder())
    assert summary.status == "failed" and calls == 5
    assert (summary.current, summary.succeeded) == (2, 2), "the items' batch was committed"
    assert env.lib.get_album(album.id).artpath == os.fsencode(art) and art.exists(), "art back in place"
    assert all(os.path.exists(env.item(i.id).path) for i in items)
    assert pending(JobStore(store_path(env.lib))) == []


def test_a_journal_that_fails_ends_the_run_not_the_item(env: LibraryEnv) -> None:
    ids = [env.add_track(f"t{n:02d}.mp3", {"title": f"  Song {n} ", "artist": "A"}).id for n in range(12)]
    before = {i.id: (i.path, i.title) for i in env.lib.items()}
    sink = Recorder()
    store = JobStore(store_path(env.lib))
    # two intents per item (tags, move), journaled a wave at a time: the first
    # wave is done whole, the second finds the store broken before its first write
    summary = engine(env, "process", journal=FailingJournal(store, good=2 * FIRST_WAVE + 1)).run(ids, sink)
    assert summary.status == "failed"
    assert summary.error is not None and summary.error.startswith("the job store is unreadable (test)")
    assert f"the last batch of {FIRST_WAVE} items was undone on disk" in summary.error
    assert [r.item_id for _, r in sink.results] == ids[:FIRST_WAVE], "the run stopped in its second wave"
    assert all(not r.success and "not recorded" in (r.error or "") for _, r in sink.results)
    untouched(env, before)


@pytest.mark.fast
def test_resume_continues_the_counters_without_a_new_start(env: LibraryEnv) -> None:
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"  Song {n} ", "artist": "A"}).id for n in range(6)]
    earlier = Summary(total=10, current=4, succeeded=3, failed=1,
                      failures=[ItemResult(999, "/gone.ogg", success=False, error="gone")])
    sink = Recorder()
    summary = engine(env, "normalize").run(ids, sink, resume=earlier)
    assert sink.started == [], "the job's stream has its start already"
    assert (summary.total, summary.current, summary.succeeded, summary.failed) == (10, 10, 9, 1)
    assert [n for n, _ in sink.results] == [5, 6, 7, 8, 9, 10]
    assert summary.status == "completed" and [f.item_id for f in summary.failures] == [999]


@pytest.mark.fast
def test_resume_counts_what_the_stopped_run_committed_as_done_not_skipped(env: LibraryEnv) -> None:
    """A worker that exits gracefully (gunicorn HUP, --max-requests) may have
    committed items it had not reported yet; its journal said which, and with
    what marker time. The run resuming the job finds them marked with exactly
    that time: its own, succeeded. Marked at another time (before, by another
    job, by hand): someone else's, skipped."""
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(6)]
    committed = time.time() - 60
    for item_id, when in ((ids[0], committed - 3600), (ids[1], committed), (ids[2], committed),
                          (ids[3], committed + 30)):
        item = env.item(item_id)
        item["renamed"] = when
        item.store()
    earlier = Summary(total=8, current=2, succeeded=2, status="running")
    sink = Recorder()
    unreported = {item_id: Unreported(committed) for item_id in ids[1:4]}  # ids[3]: marked again since
    summary = engine(env, "rename").run(ids, sink, resume=earlier, unreported=unreported)
    outcome = {r.item_id: ("skipped" if r.skipped else "done" if r.success else "failed") for _, r in sink.results}
    assert outcome == {ids[0]: "skipped", ids[1]: "done", ids[2]: "done", ids[3]: "skipped",
                       ids[4]: "done", ids[5]: "done"}
    assert (summary.current, summary.succeeded, summary.skipped) == (8, 6, 2)


class CtrlCAfterCommit(Engine):
    """A real SIGINT, sent the instant the batch's COMMIT has returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        commit = self.committer.commit

        def commit_then_ctrl_c(*args: Any) -> Any:
            conflicted = commit(*args)
            os.kill(os.getpid(), signal.SIGINT)
            return conflicted

        self.committer.commit = commit_then_ctrl_c  # type: ignore[method-assign]


@pytest.mark.usefixtures("sigint_delivered")  # the signal goes to this process
def test_ctrl_c_right_after_the_commit_is_not_called_an_undo(env: LibraryEnv) -> None:
    """Ctrl-C lands between the COMMIT and the run's bookkeeping of it: the
    batch is in the library, so the run must not say it was undone, must
    report its items as done, and must leave files where the library says."""
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(6)]
    sink = Recorder()
    with pytest.raises(KeyboardInterrupt):
        engine(env, "rename", cls=CtrlCAfterCommit).run(ids, sink)
    summary = sink.summary
    assert summary is not None and summary.status == "cancelled"
    assert summary.error == "interrupted", "nothing was undone: the batch had been recorded"
    assert [r.item_id for _, r in sink.results] == ids and all(r.success for _, r in sink.results)
    assert env.beet_ids("unmarked:rename") == [], "all six recorded as renamed"
    consistent(env, env.incoming, env.lib_path)



class SeesTheJournalAtReport(Engine):
    """Looks at the journal the moment a committed batch is about to be reported."""

    seen: list[dict[int, Unreported]]

    def _report(self, batch: Any, summary: Summary, sink: Any) -> None:
        assert self.journal is not None
        self.seen.append(unreported(self.journal.store, self.journal.job))
        super()._report(batch, summary, sink)


@pytest.mark.fast
def test_a_commit_journals_what_it_marks_until_it_is_reported(env: LibraryEnv) -> None:
    """What a resumed job relies on: between a batch's commit and its report
    the journal names every item the commit marked, with its marker time;
    once reported, nothing is left."""
    ids = [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(5)]
    run = engine(env, "rename", cls=SeesTheJournalAtReport)
    assert isinstance(run, SeesTheJournalAtReport)
    run.seen = []
    summary = run.run(ids, Recorder())
    assert summary.succeeded == 5 and len(run.seen) == 1
    assert sorted(run.seen[0]) == ids
    assert all(abs(float(env.item(i)["renamed"]) - noted.time) < 0.001 for i, noted in run.seen[0].items())
    # ... and the result its report sends (what a resumed run or an undo needs if the report never comes)
    assert all(noted.result is not None and os.fsencode(noted.result["dest"]) == env.item(i).path
               and noted.result["undo"]["markers"]["renamed"] is None for i, noted in run.seen[0].items())
    assert unreported(JobStore(store_path(env.lib)), 1) == {}
