"""The job store stays within its size budget (``job_history_mb``) and shrinks on disk."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing

import pytest

from beetsplug.unmarked.errors import StoreError
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import pending

from .libenv import LibraryEnv, read_only


def store_bytes(env: LibraryEnv) -> int:
    """The store's file and its write-ahead log."""
    path = store_path(env.lib)
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def test_twelve_large_jobs_fit_a_two_megabyte_budget(env: LibraryEnv) -> None:
    env.add_tracks((f"t{n:04d}.flac", {"title": f"Song {n}", "artist": "A", "album": "B"}) for n in range(2000))
    os.remove(env.lib.get_item(7).path)  # one failure per job: failures are kept for every job
    env.configure(unmarked={"job_history_mb": 2})
    sizes = []
    for _ in range(12):
        env.beet("normalize-unmarked", "--force", check=False)
        sizes.append(store_bytes(env))
    assert max(sizes) <= 2.2 * (1 << 20), f"budget 2 MiB + 10 %: {sizes}"  # before: 2.35-3.0 MB
    jobs = JobStore(store_path(env.lib)).list()
    assert len(jobs) == 12 and all(job["status"] == "completed" for job in jobs)
    assert all(len(job["errors"]) == 1 for job in jobs), "every job keeps its failures"
    assert jobs[-1]["compacted"] and not jobs[0]["compacted"], "oldest compacted first, newest kept whole"


def test_a_store_that_cannot_be_written_is_not_called_damaged(env: LibraryEnv) -> None:
    """A read-only directory (or a full disk) is not damage: no advice to move the store aside."""
    where = env.temp_path / "locked-away"
    where.mkdir()
    with read_only(where), pytest.raises(StoreError) as refused:
        JobStore(str(where / "library.db-unmarked.db"))
    assert "not damaged" in str(refused.value) and "Move it aside" not in str(refused.value)


def test_intents_journaled_by_an_older_release_are_settled(env: LibraryEnv) -> None:
    """Stores made before the journal's table was named ``intents`` held it as
    ``moves``: a move recorded there by a run that was killed is carried over
    on open and repaired by the next run, like one recorded today."""
    item = env.add_track("old.flac", {"title": "Old", "artist": "A", "album": "B"})
    moved_to = env.temp_path / "elsewhere.flac"
    os.rename(item.path, moved_to)  # the killed run moved the file, did not store the path
    path = store_path(env.lib)
    JobStore(path)  # today's layout, then taken back to the old one
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("ALTER TABLE intents RENAME TO moves")
        db.execute("INSERT INTO moves (job, kind, entity, src, dst) VALUES (1, 'item', ?, ?, ?)",
                   (item.id, item.path, os.fsencode(moved_to)))

    env.beet("rename-unmarked")

    now = env.item(item.id)
    assert os.path.exists(now.path) and not moved_to.exists(), "repaired, then renamed into the library"
    assert pending(JobStore(path)) == []
    with closing(sqlite3.connect(path)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "moves" not in tables and "intents" in tables


@pytest.mark.fast
def test_a_new_store_gives_freed_pages_back_to_the_file_system(env: LibraryEnv) -> None:
    """Incremental auto-vacuum is set before WAL writes the new file's header
    (set after, it silently stays off until the first compaction's VACUUM)."""
    store = JobStore(str(env.temp_path / "fresh.db"))
    assert store.rows("PRAGMA auto_vacuum")[0][0] == 2  # INCREMENTAL
