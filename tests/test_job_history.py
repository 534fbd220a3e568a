"""The job store stays within its size budget (``job_history_mb``) and shrinks on disk."""

from __future__ import annotations

import os

import pytest

from beetsplug.unmarked.errors import StoreError
from beetsplug.unmarked.jobs import JobStore, store_path

from .libenv import LibraryEnv, read_only


def store_bytes(env: LibraryEnv) -> int:
    path = store_path(env.lib)
    return sum(os.path.getsize(path + s) for s in ("", "-wal", "-shm") if os.path.exists(path + s))


def test_twelve_large_jobs_fit_a_two_megabyte_budget(env: LibraryEnv) -> None:
    env.add_tracks((f"t{n:04d}.flac", {"title": f"Song {n}", "artist": "A", "album": "B"}) for n in range(2000))
    os.remove(env.lib.get_item(7).path)  # one failure per job: failures are kept for every job
    env.configure(unmarked={"job_history_mb": 2})
    sizes = []
    for _ in range(12):
        env.beet("normalize-unmarked", "--force", check=False)
        sizes.append(store_bytes(env))
    assert max(sizes) < 3 << 20, sizes
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
