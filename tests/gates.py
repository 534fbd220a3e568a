"""Gates: hold a real job at a known point, whatever the machine's speed.

A test that needs a job to be *running* at some moment (to cancel it, to let
a second tab re-attach, to outlast gunicorn's ``--timeout``, to run other
beets commands beside it, to pull a file from under it) must not bet on the
job being slow. Every faster machine and every speed-up of the code turns
such a bet into a flaky test, or worse, into one that passes without testing
anything. An item count is never "enough", a sleep is never "long enough",
and product code gets no test-only pauses.

The gate here is one a user really meets: another program holding the beets
library database's write lock (a ``beet modify``, an import, an open
``sqlite3`` shell). beets sets no PRAGMAs, so the library uses SQLite's
rollback journal; ``BEGIN IMMEDIATE`` takes the RESERVED lock, which lets
readers go on reading. So, while the gate is held, a job claims the library,
selects its items and works through its first batch (for each item it
journals an intent in the job store, then writes the file), but the batch's
commit waits. The engine tries that commit 6 times, each waiting beets'
``timeout`` (5 s by default, plus a short back-off), and sends the batch's
item events only after the commit. While the gate is held the job is
therefore running, none of its items is committed or reported, and it cannot
finish. ``release()`` (a ROLLBACK: the gate never changes anything) lets it
go on.

Keep holds well under ~30 s or the job gives up with "library locked"; a
hold longer than beets' ``timeout`` makes the engine log "library locked;
retrying", which is harmless.

What a test can watch while the gate is held: the job's row in the job store
(status "running", ``current`` stays 0), its ``start`` event, and the journal:
``in_flight(env)`` counts the items the job has started on and not yet
committed (an intent is journaled before each item's tag write or move). That
is item-granular progress, visible to any process.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import pending

from .libenv import LibraryEnv

T = TypeVar("T")


class WriteLock:
    """An SQLite database's write lock, held by this test as another program
    would hold it. Use as a context manager; ``release()`` may come earlier
    and from any thread (it is idempotent)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._mutex = threading.Lock()

    def acquire(self) -> WriteLock:
        with self._mutex:
            assert self._conn is None, "already held"
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("BEGIN IMMEDIATE")
            self._conn = conn
        return self

    def release(self) -> None:
        with self._mutex:
            if self._conn is None:
                return
            self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def __enter__(self) -> WriteLock:
        return self.acquire() if self._conn is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def library_write_lock(env: LibraryEnv) -> WriteLock:
    """``with library_write_lock(env) as gate: ...``: hold the library's write lock."""
    return WriteLock(env.settings["library"])


def store_write_lock(env: LibraryEnv) -> WriteLock:
    """The job store's write lock, to hold a job *away from the library*.

    While the library gate holds a job, its commit waits inside a beets
    transaction, and beets serialises all transactions of a process with one
    lock: the server running the job then answers nothing that reads the
    library (the page's counts) until the commit attempt gives up, up to
    beets' ``timeout`` later. To look at a held job through such reads, hand
    it over: take this lock, then release the library gate. The job then
    finishes its commit or its current item and waits at its next journal
    entry or event, both writes to the job store, holding no library
    transaction; nothing more of it is reported. Readers of the store (the
    SSE streams, the job summaries) go on: it is in WAL mode.

    Take it only while the library gate holds a job (else it would stop the
    job's claim instead), and keep it short (the store's busy timeout is 30 s).
    """
    return WriteLock(store_path(env.lib))


@contextmanager
def off_the_library(env: LibraryEnv, gate: WriteLock) -> Iterator[WriteLock]:
    """Hand a job held by the library ``gate`` over to the job store's write
    lock (see ``store_write_lock``) for the block; the gate is released."""
    with store_write_lock(env) as held:
        gate.release()
        yield held


def wait_for(check: Callable[[], T], what: str, timeout: float = 30,
             alive: Callable[[], Any] | None = None, poll: float = 0.01) -> T:
    """Poll ``check()`` until it returns something true; return that.
    ``alive()`` may assert that the process under test is still there."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


_stores: dict[str, JobStore] = {}


def store(env: LibraryEnv) -> JobStore:
    """The library's job store, as any other process sees it."""
    path = store_path(env.lib)
    if path not in _stores:
        _stores[path] = JobStore(path)
    return _stores[path]


def in_flight(env: LibraryEnv, job: int | None = None) -> int:
    """Items a job has started on (journaled a tag write or a move for) and not
    yet committed."""
    return len({m.entity for m in pending(store(env))
                if m.kind != "album" and (job is None or m.job == job)})


def wait_in_flight(env: LibraryEnv, count: int = 1, timeout: float = 30,
                   alive: Callable[[], Any] | None = None) -> int:
    """Until a job has started on at least ``count`` items; return how many."""
    return wait_for(lambda: (n := in_flight(env)) >= count and n, f"{count} item(s) in flight", timeout, alive)


def running_job(env: LibraryEnv, timeout: float = 30, alive: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Until a job runs on the library (its ``start`` event is out); its summary."""
    return wait_for(lambda: next((j for j in store(env).list(5) if j["status"] == "running"), None),
                    "a running job", timeout, alive)


def progress(env: LibraryEnv, job: int) -> int:
    """Items of ``job`` done or under way: committed and reported (``current``)
    plus in flight. Item-granular, whatever the batch sizes."""
    summary = store(env).get(job)
    return (summary["current"] if summary else 0) + in_flight(env, job)
