"""The helper process (helper.py): same results as one process, and no
weaker when either process dies.

Real ``beet`` runs on real audio. One run with the helper, one without (a
plugin listening to ``item_moved`` keeps the work in one process), must leave
the same library and the same files. Killing the parent takes the helper
with it and holds the library until both are gone; killing the helper stops
the run with its batch put back; either way the next run settles everything.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from mediafile import MediaFile

from beetsplug.unmarked.jobs import store_path

from .audio import read_tags
from .consistency import consistent
from .gates import library_write_lock, progress, store
from .libenv import BEET, LibraryEnv, audio_files
from .shared import populate
from .signals import sigint_ignored

EXTS = ["flac", "ogg", "mp3"]
NO_HELPER = '''
from beets.plugins import BeetsPlugin

class Listens(BeetsPlugin):
    """Listens to item_moved: the engine then keeps all file work in its own process."""
    def __init__(self):
        super().__init__()
        self.register_listener("item_moved", lambda item, source, destination: None)
'''


def without_helper(env: LibraryEnv) -> None:
    folder = env.temp_path / "test-plugins"
    folder.mkdir(exist_ok=True)
    (folder / "listens.py").write_text(NO_HELPER)
    env.configure(pluginpath=[str(folder)], plugins=["unmarked", "listens"])


def state(env: LibraryEnv) -> list[tuple[Any, ...]]:
    """Each item as the library and its file have it, paths relative to the env."""
    root = os.fsencode(env.temp_path)
    rows = []
    for item in sorted(env.lib.items(), key=lambda i: i.id):
        tags = read_tags(Path(os.fsdecode(item.path)))
        rows.append((os.path.relpath(item.path, root), item.title, item.artist, item.album, item.albumartist,
                     item.get("normalized") is not None, item.get("renamed") is not None,
                     tags.get("title"), tags.get("artist"), tags.get("album")))
    return rows


@pytest.mark.parametrize("op", ["process-unmarked", "rename-unmarked", "normalize-unmarked"])
def test_the_helper_changes_nothing_in_the_outcome(op: str) -> None:
    outcomes = []
    for helper in (True, False):
        with LibraryEnv() as env:
            if not helper:
                without_helper(env)
            populate(env, 90)
            env.configure(unmarked={"batch_size": 40})  # several batches, several waves each
            run = env.beet("-v", op)
            assert ("helper process" in run.stderr) == helper, run.stderr
            assert "90 succeeded, 0 failed" in run.stdout
            consistent(env, env.incoming, env.lib_path)
            outcomes.append(state(env))
    assert outcomes[0] == outcomes[1]


def helper_pid(pid: int, timeout: float = 30) -> int:
    """The helper process of ``beet`` ``pid`` (its child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = children.read_text().split() if children.exists() else []
        if found:
            return int(found[0])
        time.sleep(0.005)
    raise AssertionError("no helper process appeared")


def lock_is_free(path: str) -> bool:
    """Nobody holds ``path`` exclusively or shared right now (asks the kernel)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def holds_file(pid: int, path: str) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # gone meanwhile
        return False


def started(env: LibraryEnv, op: str = "process-unmarked", *, hold_helper: bool = False
            ) -> tuple[subprocess.Popen[str], int]:
    """A real run, once its helper has been handed files (some item in flight
    or done). ``hold_helper``: the helper is stopped (SIGSTOP) before it is
    handed anything, so work waits on it whatever the machine's speed."""
    jobs = store(env)
    proc = subprocess.Popen([BEET, op], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = helper_pid(proc.pid)
    if hold_helper:
        os.kill(child, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        job = jobs.list(1)
        if job and job[0]["status"] == "running" and progress(env, job[0]["job"]) >= 10:
            break
        time.sleep(0.002)
    assert proc.poll() is None, proc.communicate()
    return proc, child


def test_killing_the_run_kills_its_helper_and_the_library_stays_claimed_until_both_are_gone(env: LibraryEnv) -> None:
    populate(env, 120)
    lock = store_path(env.lib).removesuffix(".db") + ".lock"
    proc, child = started(env)
    assert holds_file(child, lock), "the helper holds the library's lock too"
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        holds = holds_file(child, lock)  # (a dying process has closed its files: it cannot touch any)
        assert not (holds and lock_is_free(lock)), "the library is free while the helper may still touch a file"
        time.sleep(0.001)
    assert not alive(child), "the helper outlived its parent"
    assert lock_is_free(lock)
    again = env.beet("process-unmarked")
    assert "0 failed" in again.stdout
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_a_helper_that_dies_stops_the_run_and_its_batch_is_put_back(env: LibraryEnv) -> None:
    populate(env, 120)
    env.configure(unmarked={"batch_seconds": 60, "batch_size": 1000})  # one batch: nothing committed yet
    before = {item.id: (item.path, item.title) for item in env.lib.items()}
    proc, child = started(env, hold_helper=True)  # files handed to it, not all done
    os.kill(child, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    assert "helper process stopped unexpectedly (killed by signal 9)" in err
    assert "was undone on disk" in err and "Traceback" not in err
    assert {item.id: (item.path, item.title) for item in env.lib.items()} == before, "nothing recorded"
    assert [p for p in env.temp_path.rglob(".*.tmp")] == [], "no temp file of the killed write is left"
    for item in env.lib.items():
        assert read_tags(Path(os.fsdecode(item.path))).get("title") == [item.title], "files as the library says"
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_stops_the_helper_first_then_puts_the_batch_back(env: LibraryEnv) -> None:
    populate(env, 120, albums=False)  # (albums: their rows are stored first, a commit the gate would hold)
    env.configure(unmarked={"batch_seconds": 60, "batch_size": 1000})
    before = {item.id: (item.path, item.title) for item in env.lib.items()}
    with library_write_lock(env):  # the run cannot finish (gates.py): Ctrl-C lands mid-run on any machine
        proc, child = started(env)
        assert not sigint_ignored(proc.pid), "the run can be interrupted (conftest: sigint_delivered)"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert not alive(child)
    assert {item.id: (item.path, item.title) for item in env.lib.items()} == before
    assert len(audio_files(env.incoming, env.lib_path)) == 120
    env.beet("process-unmarked")
    consistent(env, env.incoming, env.lib_path)


ZEROES = '''
from beets.plugins import BeetsPlugin

class Zeroes(BeetsPlugin):
    """Like beets' zero plugin: clears a field in the tags every write sends."""
    def __init__(self):
        super().__init__()
        self.register_listener("write", self.write)

    def write(self, item, path, tags):
        if "comments" in tags:
            tags["comments"] = None
'''


def test_a_plugin_on_write_gets_beets_whole_write_in_one_process(env: LibraryEnv) -> None:
    """A plugin that edits tags on ``write`` (zero, scrub) needs every tag in
    the event: then beets' whole ``Item.write``, and no helper."""
    folder = env.temp_path / "test-plugins"
    folder.mkdir(exist_ok=True)
    (folder / "zeroes.py").write_text(ZEROES)
    env.configure(pluginpath=[str(folder)], plugins=["unmarked", "zeroes"])
    for n in range(12):
        item = env.add_track(f"{n}.{EXTS[n % 3]}", {"title": f"  Song   {n}", "artist": "A"})
        item.comments = "secret"
        item.write()
        item.store()
        assert MediaFile(item.path).comments == "secret"
    run = env.beet("-v", "process-unmarked")
    assert "helper process" not in run.stderr and "12 succeeded" in run.stdout
    for item in env.lib.items():
        assert MediaFile(item.path).comments in (None, ""), "the plugin's edit reached the file"
        assert MediaFile(item.path).title == item.title


def test_the_parent_takes_the_destinations_the_helper_has_not_begun(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two counters per request (shared after the fork): the parent takes items
    from the end while the helper has not begun them, the helper stops where
    the parent's items start; every item is computed at least once."""
    from beetsplug.unmarked import helper as helpers

    memory = mmap.mmap(-1, 2 * helpers.SLOTS * 8)
    counters = memoryview(memory).cast("q")
    parent = object.__new__(helpers.Helper)  # the counters only: no process
    parent._begun, parent._limit = counters[:helpers.SLOTS], counters[helpers.SLOTS:]
    slot = 3
    parent._begun[slot], parent._limit[slot] = 0, 5
    assert [parent.steal(slot), parent.steal(slot)] == [4, 3]
    monkeypatch.setattr(helpers, "_destination", lambda lib, key, row, changes: helpers.DestinationDone(key))
    done = helpers._destinations(None, (parent._begun, parent._limit), slot,  # type: ignore[arg-type]
                                 [(key, None, {}) for key in range(5)])
    assert [d.key for d in done] == [0, 1, 2], "the helper stops where the parent's items start"
    assert parent.steal(slot) is None, "nothing left that the helper has not begun"
    parent._begun[slot], parent._limit[slot] = 2, 5  # the helper is at item 1 of 5
    assert [parent.steal(slot) for _ in range(4)] == [4, 3, 2, None]
    del counters, parent


BUSY_SQLITE = '''
import sqlite3
import threading

from beets.plugins import BeetsPlugin

QUERY = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 200000) "
         "SELECT count(*) FROM (SELECT printf('%0100d', x) AS s FROM c ORDER BY s)")


def busy():
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    while True:
        conn.execute(QUERY).fetchall()


class BusySqlite(BeetsPlugin):
    """A thread of the server that is always inside SQLite, as request threads reading the library are."""
    def __init__(self):
        super().__init__()
        threading.Thread(target=busy, name="busy-sqlite", daemon=True).start()
'''


def test_a_web_job_finishes_while_another_server_thread_is_inside_sqlite() -> None:
    """A forked child gets only the forking thread: a lock another thread held
    at that instant (SQLite's memory mutex, say) stays held in the child for
    good. A web job must not leave its work to such a child: each of these
    jobs (enough items for a helper) finishes, every item done."""
    from .servers import beet_web
    from .test_web_api import wait_status

    with LibraryEnv() as env:
        populate(env, 8, albums=False)
        folder = env.temp_path / "test-plugins"
        folder.mkdir()
        (folder / "busysqlite.py").write_text(BUSY_SQLITE)
        env.configure(pluginpath=[str(folder)], plugins=["unmarked", "web", "busysqlite"], web={"readonly": False})
        server = beet_web(env)
        try:
            for run in range(16):
                response = server.post("/api/jobs", json={"op": "normalize", "force": True})
                assert response.status_code == 202, response.text
                summary = wait_status(server, response.json()["job"], {"completed", "failed", "cancelled"}, 90)
                assert (summary["status"], summary["succeeded"]) == ("completed", 8), (run, summary["error"])
        finally:
            server.stop()
        consistent(env)
