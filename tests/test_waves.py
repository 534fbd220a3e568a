"""Batches are worked in waves (waves.py): sized by the batch's time bound,
also when there is none (the import hook's one batch per task). With the
helper, a rename begins the next batch's first wave while a batch commits
(``Waves.look_ahead``): nothing of it may show if the run stops there, and the
art the commit moved is seen by that wave's destinations."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import pending
from beetsplug.unmarked.waves import FIRST_WAVE

from .audio import make_track, read_tags
from .consistency import consistent
from .gates import library_write_lock, wait_for
from .libenv import BEET, LibraryEnv, audio_files
from .test_helper import state, without_helper

EXTS = ["flac", "ogg", "mp3"]


def test_an_import_task_larger_than_a_wave_is_one_batch(env: LibraryEnv) -> None:
    """The import hook has no time bound (``batch_seconds`` infinite): waves
    after the first are sized from that too, and the task stays one commit."""
    count = 3 * FIRST_WAVE
    env.configure(unmarked={"auto": True})
    album_dir = env.temp_path / "import" / "album"
    for n in range(count):
        make_track(album_dir / f"{n:02d}.{EXTS[n % 3]}", {"title": f"  Song   {n} ft. Guest", "artist": "The  Band",
                                                       "album": "Big  Album", "tracknumber": str(n + 1)})
    env.beet("import", "-A", "-C", "-q", str(album_dir.parent))
    imported = list(env.lib.items())
    assert len(imported) == count
    for item in imported:
        assert item.title.startswith("Song ") and "feat. Guest" in item.title
        assert read_tags(Path(os.fsdecode(item.path)))["title"] == [item.title]
        assert item.path == item.destination()
    stamps = {(item.get("normalized"), item.get("renamed")) for item in imported}
    assert len(stamps) == 1 and None not in next(iter(stamps)), "one marker write for the task"
    assert audio_files(album_dir) == []


def test_a_rename_cancelled_while_a_batch_commits_starts_nothing_after_it(env: LibraryEnv) -> None:
    """The cancel comes while the first batch waits for the library's write
    lock, the next batch's first wave begun meanwhile: that batch is the last,
    and no file of the wave begun ahead of it moves."""
    batch, total = 5, 20
    env.configure(unmarked={"batch_size": batch, "batch_seconds": 3600})
    ids = [item.id for item in env.add_tracks(
        (f"{n:02d}.{EXTS[n % 3]}", {"title": f"Song {n}", "artist": "A", "album": "B"}) for n in range(total))]
    before = {item_id: env.item(item_id).path for item_id in ids}
    jobs = JobStore(store_path(env.lib))
    with library_write_lock(env):
        run = subprocess.Popen([BEET, "-v", "rename-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: len(pending(jobs)) == batch, "the first batch's moves to be journaled")
        env.beet("unmarked-jobs", "--cancel", "1")
    out, err = run.communicate(timeout=120)
    assert "helper process" in err, err
    job = jobs.get(1)
    assert job["status"] == "cancelled" and job["succeeded"] == job["current"] == batch, (out, err)
    moved = {item_id for item_id in ids if env.item(item_id).path != before[item_id]}
    assert moved == set(ids[:batch]) == set(env.beet_ids("^unmarked:rename"))
    assert pending(jobs) == []
    consistent(env, env.incoming, env.lib_path)


def test_art_a_commit_moved_is_seen_by_the_wave_begun_ahead() -> None:
    """A path format that reads ``$artpath``: the items of an album whose art a
    commit moved get the destinations a one-process run gives them, though
    their wave was begun (and its destinations asked) before that commit."""
    outcomes = []
    for helper in (True, False):
        with LibraryEnv() as env:
            if not helper:
                without_helper(env)
            env.configure(unmarked={"batch_size": 6, "batch_seconds": 3600},
                          paths={"default": "$albumartist/$album/%right{$artpath,9} $track $title"})
            items = env.add_tracks(
                (f"{n:02d}.{EXTS[n % 3]}", {"title": f"Song {n}", "artist": "A", "album": f"B{n // 9}",
                                            "tracknumber": str(n % 9 + 1)}) for n in range(27))
            for start in range(0, len(items), 9):
                album = env.lib.add_album(items[start:start + 9])
                art = Path(os.fsdecode(items[start].path)).parent / f"cover{start}.jpg"
                art.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
                album.artpath = os.fsencode(art)
                album.store()
            run = env.beet("-v", "rename-unmarked")
            assert ("helper process" in run.stderr) == helper, run.stderr
            assert "27 succeeded, 0 failed" in run.stdout
            root = os.fsencode(env.temp_path)
            outcomes.append((state(env), sorted(os.path.relpath(a.artpath, root) for a in env.lib.albums())))
    assert outcomes[0] == outcomes[1]
