"""A move is visible only with its commit: the library's path exists at every instant.

Issue: a run killed between moving a batch and committing it left up to a
batch of items pointing at files that were not there; a plain `beet update`
in that window (or the README's recovery for a damaged job store: move it
aside, `beet update`) deleted those entries and orphaned their files. Now a
move places the file at its destination (a link, or a synced copy across
filesystems), commits, and only then removes the old name (moves.py).

The kills are aimed by a gate (tests/gates.py): the library's write lock is
held, so the job places its whole batch and waits at its commit; the test
sees every destination on disk, then kills it.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from beetsplug.unmarked.jobs import store_path
from beetsplug.unmarked.journal import ITEM, pending

from .consistency import consistent, files_accounted_for
from .gates import library_write_lock, store, wait_for
from .libenv import LibraryEnv, audio_files
from .shared import add_many, start_beet
from .test_exits import add_noise_tracks, leftovers, on_shm


def placed(env: LibraryEnv, count: int) -> bool:
    """The held job has journaled ``count`` moves and every destination exists."""
    moves = [m for m in pending(store(env)) if m.kind == ITEM]
    return len(moves) == count and all(os.path.exists(m.dst) for m in moves)


def kill_at_the_commit(env: LibraryEnv, count: int) -> None:
    """A real rename of ``count`` items in one batch, killed (SIGKILL) while
    its commit waits for the library: every file is placed, none recorded."""
    with library_write_lock(env):
        proc = start_beet(env, "rename-unmarked")
        wait_for(lambda: placed(env, count), "every file placed at its destination",
                 alive=lambda: proc.poll() is None or pytest.fail(proc.communicate()[1]))
        proc.kill()
        proc.communicate()


@pytest.fixture
def env_on(request: pytest.FixtureRequest) -> Iterator[LibraryEnv]:
    """A library whose files all move on a rename: on the same filesystem, or
    (``across``) its music directory on /dev/shm and the files outside it on disk."""
    with LibraryEnv({"unmarked": {"batch_size": 1000, "batch_seconds": 1000}}) as env:
        if request.param == "same":
            env.roots = (env.incoming, env.lib_path)  # type: ignore[attr-defined]
            yield env
            return
        shm = Path("/dev/shm")
        if not shm.is_dir() or os.stat(shm).st_dev == os.stat(env.temp_path).st_dev:
            pytest.skip("needs /dev/shm on another filesystem than the temp dir")
        music = Path(tempfile.mkdtemp(prefix="unmarked-moves-", dir=shm))
        try:
            on_shm(env, music)
            env.roots = (env.incoming, music)  # type: ignore[attr-defined]
            yield env
        finally:
            shutil.rmtree(music, ignore_errors=True)


@pytest.mark.parametrize("env_on", ["same", "across"], indirect=True)
def test_beet_update_after_a_kill_deletes_nothing(env_on: LibraryEnv) -> None:
    env = env_on
    ids = add_many(env, 40)
    kill_at_the_commit(env, len(ids))
    files_accounted_for(env, *env.roots)  # every item's path exists right after the kill

    env.beet("update")
    assert sorted(env.ids()) == sorted(ids), "beet update deleted library entries"
    files_accounted_for(env, *env.roots)

    run = env.beet("rename-unmarked")
    assert f"{len(ids)} succeeded" in run.stdout, run.stdout
    consistent(env, *env.roots)


@pytest.mark.parametrize("env_on", ["same", "across"], indirect=True)
def test_the_readmes_recovery_for_a_damaged_store_deletes_nothing(env_on: LibraryEnv) -> None:
    """The README's steps for a job store that cannot be read: move it aside,
    run again. Killed with every file placed, the journal then lost: no entry
    deleted, no file lost, and the next run leaves no second name behind."""
    env = env_on
    ids = add_many(env, 40)
    kill_at_the_commit(env, len(ids))
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store_path(env.lib) + suffix):
            os.rename(store_path(env.lib) + suffix, store_path(env.lib) + suffix + ".broken")

    env.beet("update")
    assert sorted(env.ids()) == sorted(ids), "beet update deleted library entries"
    run = env.beet("rename-unmarked")
    assert f"{len(ids)} succeeded" in run.stdout, run.stdout
    consistent(env, *env.roots)
    assert len(audio_files(*env.roots)) == len(ids)


@pytest.mark.parametrize("env_on", ["across"], indirect=True)
def test_a_copy_killed_half_way_leaves_no_hidden_copy_after_the_next_run(env_on: LibraryEnv) -> None:
    """A cross-device copy killed mid-way (aimed by its temp file appearing),
    the job store then moved aside as the README says: `beet update` deletes
    nothing, and the next run removes the hidden partial copy."""
    env = env_on
    ids = add_noise_tracks(env, 3)
    proc = start_beet(env, "rename-unmarked")
    wait_for(lambda: leftovers(*env.roots), "a partial copy", alive=lambda: proc.poll() is None or pytest.fail(
        "the run ended before a copy was seen"), poll=0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    os.rename(store_path(env.lib), store_path(env.lib) + ".broken")

    env.beet("update")
    assert sorted(env.ids()) == sorted(ids)
    env.beet("rename-unmarked")
    assert leftovers(*env.roots) == []
    consistent(env, *env.roots)
