"""What else runs beside a job: another program's album edit while a batch
waits to commit (and while the next batch's first wave is begun ahead),
another job between a web job's death and its resumption, processes opening
the job store at once, another program's file appearing at a destination.

Each test stood for one flaw found by trying to break the plugin (each
failed before its fix): what another program or process can do, and what
the plugin promises about it.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
import traceback
from pathlib import Path

import pytest

from beetsplug.unmarked.jobs import SCHEMA, JobStore, store_path
from beetsplug.unmarked.journal import ITEM, pending

from .consistency import consistent
from .gates import library_write_lock, store, wait_for
from .libenv import LibraryEnv
from .servers import beet_web, web_settings
from .shared import add_many, start_beet
from .test_helper import without_helper
from .test_web_api import wait_status

EXTS = ["flac", "ogg", "mp3"]
# The path format reads an album-level field (``mood``) that another program
# may set on the album alone (``beet modify -a -I mood=...``: --noinherit).
MOOD_PATHS = {"default": "$albumartist/$album%ifdef{mood, ($mood)}/$track $title",
              "singleton": "Singles/$artist - $title"}


class AlbumEdit:
    """Another program's edit of an album row, made inside its own write
    transaction: invisible to every other connection until ``commit()``, and
    holding the library's write lock meanwhile (as ``beet modify`` does while
    it stores). What it stores is what ``beet modify -a -I mood=X`` stores."""

    def __init__(self, env: LibraryEnv, album_id: int, key: str, value: str) -> None:
        self.conn = sqlite3.connect(env.settings["library"], isolation_level=None, timeout=30)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO album_attributes (entity_id, key, value) VALUES (?, ?, ?)",
                          (album_id, key, value))
        self.open = True

    def commit(self) -> None:
        if self.open:
            self.conn.execute("COMMIT")
            self.conn.close()
            self.open = False

    def rollback(self) -> None:
        if self.open:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.open = False


def two_albums(env: LibraryEnv, per_album: int) -> tuple[list[int], list[int]]:
    """Two albums of ``per_album`` tracks each, in ``incoming``: their item ids, their album ids."""
    ids, albums = [], []
    for number in (1, 2):
        items = env.add_tracks(
            (f"{number}-{n:02d}.{EXTS[n % 3]}",
             {"title": f"Song {number}.{n}", "artist": "A", "album": f"B{number}", "tracknumber": str(n + 1)})
            for n in range(per_album))
        albums.append(env.lib.add_album(items).id)
        ids += [item.id for item in items]
    return ids, albums


def marked_not_at_destination(env: LibraryEnv) -> list[tuple[int, str, str]]:
    wrong = []
    for item in env.lib.items():
        if item.get("renamed") is not None and item.path != item.destination():
            wrong.append((item.id, os.fsdecode(item.path), os.fsdecode(item.destination())))
    return wrong


# --- the look-ahead wave and album edits --------------------------------------------


@pytest.mark.parametrize("helper", [True, False], ids=["helper", "one-process"])
def test_an_album_edit_committed_while_a_batch_commits_reaches_the_wave_begun_ahead(helper: bool) -> None:
    """The second batch's first wave is begun (rows read, destinations computed
    by the helper) while the first batch waits for the library's write lock.
    The program holding that lock sets a field the path format uses on the
    second album alone (``beet modify -a -I``), then commits. The second
    batch's files must go where the library now says; an item marked
    ``renamed`` must be at its destination. A one-process run (the wave read
    after the commit) gets this right; with the helper the wave's stale
    destinations are used and the items are marked renamed where they no
    longer belong: the conflict check compares only the items' rows."""
    with LibraryEnv() as env:
        if not helper:
            without_helper(env)
        album_edit_while_the_first_batch_commits(env, edited=1, helper=helper)


def album_edit_while_the_first_batch_commits(env: LibraryEnv, *, edited: int, helper: bool) -> None:
    """Two albums of one batch each; album ``edited`` (0 or 1) gets ``mood``
    from another program whose write transaction the first commit waits for."""
    per_album = 6
    env.configure(unmarked={"batch_size": per_album, "batch_seconds": 3600}, paths=MOOD_PATHS)
    ids, albums = two_albums(env, per_album)
    first_batch = ids[:per_album]
    edit = AlbumEdit(env, albums[edited], "mood", "calm")  # holds the write lock: the first commit waits
    try:
        run = start_beet(env, "-v", "rename-unmarked")
        # The helper places the first batch's files at their destinations (the
        # old names go after the commit), then (in order) computes the look-ahead
        # wave's destinations; the parent meanwhile waits for the lock.
        def placed() -> bool:
            moves = {m.entity: m.dst for m in pending(store(env)) if m.kind == ITEM}
            return all(i in moves and os.path.exists(moves[i]) for i in first_batch)

        wait_for(placed, "the first batch's files to move", alive=lambda: run.poll() is None)
        time.sleep(1.0)  # the helper's next request (a few destinations) takes milliseconds
        edit.commit()
    finally:
        edit.rollback()
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, (out, err)
    assert ("helper process" in err) == helper, err
    assert "12 succeeded, 0 failed" in out, out
    assert marked_not_at_destination(env) == [], "items marked renamed that are not at their destination"
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.parametrize("helper", [True, False], ids=["helper", "one-process"])
def test_an_album_edit_while_its_items_wait_to_commit_is_not_marked_over(helper: bool) -> None:
    """The same edit, on the album of the batch that is waiting to commit:
    its files moved to destinations computed from the album as it was. The
    commit compares the items' rows, which the album-only edit did not
    change, and marks them ``renamed`` though the library now gives them
    another destination. (An item-level edit is caught and redone; an
    album-level one, with or without the helper, is not.)"""
    with LibraryEnv() as env:
        if not helper:
            without_helper(env)
        album_edit_while_the_first_batch_commits(env, edited=0, helper=helper)


# --- a resumed web job and another job's work ------------------------------------------


def test_a_resumed_web_job_does_not_claim_what_another_job_did(env: LibraryEnv) -> None:
    """A web job's server is killed before its first commit. Before any server
    is back, the user runs the same operation from the command line, which
    does every item (and says so). Then a server resumes the web job: its
    items are marked since the web job began, but by the CLI's job, not by the
    run it resumes. They are "already done by another run" (skipped), as for
    any job; the resumed job must not report them as its own successes: the
    two jobs together would then claim each item twice."""
    web_settings(env)
    count = 20
    add_many(env, count)
    server = beet_web(env)
    try:
        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
            wait_for(lambda: bool(pending(JobStore(store_path(env.lib)))), "the web job to work on a file")
            server.kill()
    finally:
        server.stop()
    cli = env.beet("process-unmarked")
    assert f"{count} succeeded, 0 failed" in cli.stdout, cli.stdout
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, job, {"completed", "failed", "interrupted"}, timeout=60)
    finally:
        restarted.stop()
    assert summary["status"] == "completed" and summary["resumed"], summary
    assert (summary["succeeded"], summary["skipped"]) == (0, count), (
        f"the resumed web job reports {summary['succeeded']} successes for items another job did")
    consistent(env, env.incoming, env.lib_path)


# --- two processes opening the job store at once ------------------------------------


def _open_store(path: str, barrier: multiprocessing.synchronize.Barrier, errors: multiprocessing.Queue) -> None:
    barrier.wait()
    try:
        JobStore(path)
    except BaseException as exc:  # reported to the test, whatever it is
        errors.put("".join(traceback.format_exception_only(exc)).strip())
    else:
        errors.put("")


def _open_together(path: str, processes: int = 3) -> list[str]:
    context = multiprocessing.get_context("fork")
    barrier, errors = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_open_store, args=(path, barrier, errors)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [errors.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(60)
    return [error for error in results if error]


OLD_STORE = SCHEMA + """
CREATE TABLE moves (id INTEGER PRIMARY KEY, job INTEGER NOT NULL, kind TEXT NOT NULL,
                    entity INTEGER NOT NULL, src BLOB NOT NULL, dst BLOB NOT NULL);
"""


@pytest.mark.parametrize("kind", ["new", "from-an-earlier-version"])
def test_processes_opening_the_job_store_at_once_all_get_it(tmp_path: Path, kind: str) -> None:
    """Two gunicorn workers booting together, or two ``beet`` commands started
    by a script, open the same job store at the same moment: on a new library
    (the file is made), or after an upgrade (the journal table is renamed and
    columns added). Every one of them must get the store; the pending intents
    of the old table must be carried over once. Found: one of them fails with
    "the job store ... cannot be used right now (duplicate column name: ids)"
    (each process adds the columns it read as missing) or "(database is
    locked)" (switching a new file to WAL), and that command exits 1."""
    failures = []
    for trial in range(30):
        path = str(tmp_path / f"{trial}.db")
        if kind != "new":
            db = sqlite3.connect(path)
            db.executescript(OLD_STORE)
            db.execute("INSERT INTO moves (job, kind, entity, src, dst) VALUES (1, 'item', 1, x'61', x'62')")
            db.commit()
            db.close()
        failures += _open_together(path)
        if kind != "new":
            intents = sqlite3.connect(path).execute("SELECT count(*) FROM intents").fetchone()[0]
            assert intents == 1, f"trial {trial}: {intents} intents carried over"
        if failures:
            break
    assert failures == [], failures[0]


# --- a file that appears at the destination between the look and the move ---------------

ARRIVES = '''
import os, shutil
from beets.plugins import BeetsPlugin

class Arrives(BeetsPlugin):
    """Another program puts its copy of a track at a destination the instant
    before the run moves its own there (what a duplicate import does)."""
    def __init__(self):
        super().__init__()
        self.register_listener("before_item_moved", self.arrive)

    def arrive(self, item, source, destination):
        if b"Song 3" in destination and not os.path.exists(destination):
            shutil.copyfile(source, destination)
            open(destination + b".stranger", "w").close()
'''


def test_a_strangers_file_that_appears_at_the_destination_is_never_deleted(env: LibraryEnv) -> None:
    """The destination was free when it was chosen; another program's file is
    there when the move comes. beets' move refuses ("file exists"), so the
    item fails; but the engine's "where is the file now?" after that failure
    finds a file at src and a byte-identical one at dst, takes dst for its
    own unfinished cross-device copy and deletes it: the other program's
    file (say, a duplicate import's, which its item points at) is gone. The
    same code runs in the helper after a failed move."""
    folder = env.temp_path / "test-plugins"
    folder.mkdir(exist_ok=True)
    (folder / "arrives.py").write_text(ARRIVES)
    env.configure(pluginpath=[str(folder)], plugins=["unmarked", "arrives"])
    env.add_tracks((f"{n}.mp3", {"title": f"Song {n}", "artist": "A", "album": "B", "tracknumber": str(n)})
                   for n in range(1, 6))
    run = env.beet("rename-unmarked", check=False)
    markers = sorted(env.lib_path.rglob("*.stranger"))
    assert len(markers) == 1, (run.stdout, run.stderr)
    theirs = Path(str(markers[0]).removesuffix(".stranger"))
    assert theirs.exists(), f"the other program's file {theirs} was deleted\n{run.stdout}{run.stderr}"
