"""The job store: jobs, their events and the journal (journal.py), in SQLite beside the library.

Every process that works on a library (the CLI, each web server worker, the
import hook) opens the same store, so any of them can report a job, stream
its events or cancel it. Who *runs* a job is not recorded here but vouched for
by the kernel: the process holding the library's lock (see claim.py). A job
row that says "running" while that lock is free belongs to a dead process.
WAL mode lets readers stream while the job writes; ``synchronous=NORMAL``
makes commits cheap (no fsync) yet safe against a killed process. The
journal's entries are committed ``durable`` (fsync'd): they must survive a
power cut too (``transaction``).

Any SQLite error other than a busy lock means the file is damaged or gone:
it becomes a ``StoreError`` that names the file and what to do.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import threading
import time
from array import array
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import journal
from .beets_compat import library_file
from .claim import LibraryLock, file_identity
from .errors import ClaimLost, StoreError
from .events import done_event, failure_entry
from .results import Summary

if TYPE_CHECKING:
    import builtins  # JobStore.list shadows the builtin inside the class
    from collections.abc import Iterator, Sequence

    from beets.library import Library

ACTIVE = ("queued", "running")
ADOPT_ORIGIN = "web"  # only web jobs are resumed by another process; a CLI user is right there
KEEP_JOBS = 50  # finished jobs (and their events) kept for the record
HOST = socket.gethostname()

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    op TEXT NOT NULL,
    query TEXT NOT NULL,
    force INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    current INTEGER NOT NULL DEFAULT 0,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL,
    cancel INTEGER NOT NULL DEFAULT 0,
    last_event INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS album_changes (
    job INTEGER NOT NULL,
    album INTEGER NOT NULL,
    changes TEXT NOT NULL,
    PRIMARY KEY (job, album)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    job INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
"""
# Columns added after the first release; stores made by it get them on open.
# ``layout``: the path configuration the job was started under (JSON, layout.py).
# ``undoes``: the job an undo job undoes (reversal.py).
ADDED_COLUMNS = {"ids": "BLOB", "resumed": "TEXT", "compacted": "INTEGER NOT NULL DEFAULT 0", "layout": "TEXT",
                 "undoes": "INTEGER"}
# The write-ahead log is checkpointed every ~800 KiB and cut back to 1 MiB, so
# it does not stay at the size of the largest job the store ever saw.
WAL_PAGES, WAL_LIMIT = 200, 1 << 20
WAL_SWITCH_SECONDS = 5  # how long to retry switching a file to WAL while another process holds it

# Which ``item`` events a job record lists, by the item's outcome.
_SKIPPED = "coalesce(json_extract(data, '$.skipped'), 0)"
ITEM_STATUS_SQL = {
    None: "type = 'item'",
    "failed": "type = 'item' AND failed = 1",
    "succeeded": f"type = 'item' AND failed = 0 AND {_SKIPPED} = 0",
    "skipped": f"type = 'item' AND failed = 0 AND {_SKIPPED} != 0",
}

SUMMARY_FIELDS = (
    "op", "query", "status", "total", "current", "succeeded", "failed",
    "skipped", "created", "started", "finished",
)


class JobConflict(Exception):
    """Another process holds this library; ``active`` is its job, if recorded."""

    def __init__(self, active: dict[str, Any] | None, lock_path: str) -> None:
        self.active = active
        what = describe(active) if active else f"another process (holding {lock_path})"
        super().__init__(what + " is running on this library")


def describe(summary: dict[str, Any]) -> str:
    """'job 12 (process, from cli, pid 4711 on host, 30/600 done)'."""
    return (
        f"job {summary['job']} ({summary['op']}, from {summary['origin']}, "
        f"pid {summary['pid']} on {summary['host']}, "
        f"{summary['current']}/{summary['total']} done)"
    )


def how_to_stop(summary: dict[str, Any]) -> str:
    """What a user can do about an active job, by where it runs."""
    anywhere = f"`beet unmarked-jobs --cancel {summary['job']}`"
    if summary["origin"] == "web":
        return f"cancel it with {anywhere} or on the /unmarked page"
    return f"stop it with Ctrl-C where it runs (pid {summary['pid']} on {summary['host']}) or {anywhere}"


class JobStore:
    """One SQLite file per library; thread-safe (a connection per thread and process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock_path = path.removesuffix(".db") + ".lock"
        self._local = threading.local()
        self._changed = threading.Condition()  # wakes this process's streams on new events
        self.identity: tuple[int, int] | None = None
        # The whole schema in one write transaction: processes opening the store
        # at once (web workers booting together) take turns, and each sees the
        # tables, columns and renames the one before it made. Statement by
        # statement, as executescript would commit in between.
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            journal.create_table(db)
            have = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            for name, kind in ADDED_COLUMNS.items():
                if name not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")

    # --- connections -----------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # not across fork
            new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            try:
                if new:  # only before the first table, and before WAL writes the header (older stores: _shrink)
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                _switch_to_wal(conn)
            except BaseException:
                conn.close()
                raise
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            found = file_identity(self.path)
            if self.identity is None:
                self.identity = found
            elif found != self.identity:  # every connection must see the same file
                conn.close()
                raise ClaimLost(f"the job store {self.path} was deleted or replaced")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors as a StoreError that names the file and the way out."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise StoreError(unreadable_message(self.path, exc)) from exc

    @contextmanager
    def transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), rolled back on any exception.

        ``durable``: the commit is on disk when the block ends, not only in
        the page cache (``synchronous=FULL`` for it: the WAL is fsync'd). A
        journal entry needs that: it must outlive a power cut that comes
        after the file change it describes. Other commits stay ``NORMAL``
        (a killed process loses none of them; a power cut may lose the last)."""
        with self._errors():
            db = self._db()
            if durable:
                db.execute("PRAGMA synchronous=FULL")
            try:
                try:  # (BEGIN inside: a signal raising as it returns must not leave the transaction open)
                    db.execute("BEGIN IMMEDIATE")
                    yield db
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                if durable:
                    db.execute("PRAGMA synchronous=NORMAL")

    def rows(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[sqlite3.Row]:
        with self._errors():
            return self._db().execute(sql, args).fetchall()

    def intact(self) -> bool:
        """The file at ``path`` is still the one this store opened."""
        return self.identity is not None and file_identity(self.path) == self.identity

    # --- jobs: created under the library lock (see runner.py) ---------------

    def create(self, op: str, query: str, *, force: bool, origin: str,
               layout: dict[str, Any] | None = None, undoes: int | None = None) -> int:
        """A new queued job, started under the path configuration ``layout``.
        Only the holder of the library lock calls this."""
        now = time.time()
        with self.transaction() as db:
            self._prune(db)
            return _inserted(db.execute(
                "INSERT INTO jobs (op, query, force, origin, status, created, host, pid, heartbeat, layout, undoes)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (op, query, int(force), origin, now, HOST, os.getpid(), now,
                 None if layout is None else json.dumps(layout, ensure_ascii=False), undoes),
            ))

    def layout(self, job: int) -> dict[str, Any] | None:
        """The path configuration the job was started under (None: a job from
        before this was recorded)."""
        rows = self.rows("SELECT layout FROM jobs WHERE id = ?", (job,))
        if not rows or rows[0]["layout"] is None:
            return None
        return json.loads(rows[0]["layout"])

    def set_ids(self, job: int, ids: Sequence[int]) -> None:
        """Record the job's items (in order): a job resumed elsewhere needs them."""
        self.update(job, ids=array("q", ids).tobytes(), total=len(ids))

    def ids(self, job: int) -> builtins.list[int] | None:
        rows = self.rows("SELECT ids FROM jobs WHERE id = ?", (job,))
        if not rows or rows[0]["ids"] is None:
            return None
        return array("q", bytes(rows[0]["ids"])).tolist()

    def orphans(self) -> builtins.list[dict[str, Any]]:
        """Jobs recorded as queued or running, oldest first. Called by the lock
        holder, for whom every one of them belongs to a process that died."""
        rows = self.rows("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY id")
        return [self._summary(row, errors=False) for row in rows]

    def interrupt(self, job: int, error: str) -> None:
        """End a dead process's job: status ``interrupted`` and a ``done`` event."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
            if row is None or row["status"] not in ACTIVE:
                return
            db.execute("UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE id = ?",
                       (time.time(), error, job))  # (its UNREPORTED notes: for runner.report_committed)
            done = done_event(job, Summary.from_record(row, "interrupted", error), self._failures(db, job))
            self._insert_events(db, row, [done])
        self._notify()

    def adopt(self, job: int, note: str) -> None:
        """Record that this process resumes a dead process's job."""
        with self.transaction() as db:
            row = db.execute("SELECT resumed FROM jobs WHERE id = ?", (job,)).fetchone()
            notes = json.loads(row["resumed"]) if row["resumed"] else []
            db.execute("UPDATE jobs SET resumed = ?, host = ?, pid = ? WHERE id = ?",
                       (json.dumps([*notes, note]), HOST, os.getpid(), job))

    def reap(self) -> None:
        """For readers: if jobs say they run but nobody holds the library lock,
        end the records of those whose process died (a plain read unless one
        needs it: this runs on every poll). Their files are the next claim's
        to repair (runner.settle)."""
        if not self.rows("SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1"):
            return
        lock = LibraryLock.take(self.lock_path, self.path, self.identity, patience=0)
        if lock is None:
            return
        try:
            self.end_orphans()
        finally:
            lock.release()

    def end_orphans(self) -> builtins.list[dict[str, Any]]:
        """Under the library lock: mark the jobs whose process died
        interrupted; return the web jobs among them, left for a server to
        resume (runner.adopt): only a server can show them."""
        left = []
        for job in self.orphans():
            if job["origin"] == ADOPT_ORIGIN:
                left.append(job)
            else:
                self.interrupt(job["job"], f"the process running it (pid {job['pid']} on {job['host']}) stopped")
        return left

    def keep_within(self, budget: int) -> None:
        """Hold the store to ``budget`` bytes: compact finished jobs, oldest
        first, to their summary, their failed items and their start/done events
        (what the page, the API and ``--show`` promise for old jobs); if that is
        not enough, drop the oldest finished jobs whole (the newest is kept).
        Freed pages go back to the file system, so the file shrinks too."""
        with self.transaction() as db:
            if _used(db) <= budget:
                return
            finished = [row["id"] for row in db.execute(
                "SELECT id FROM jobs WHERE status NOT IN ('queued', 'running') ORDER BY id")]
            for job in finished:
                db.execute("DELETE FROM events WHERE job = ? AND type = 'item' AND failed = 0", (job,))
                db.execute("DELETE FROM album_changes WHERE job = ?", (job,))
                db.execute("UPDATE jobs SET compacted = 1 WHERE id = ?", (job,))
                if _used(db) <= budget:
                    break
            for job in finished[:-1]:
                if _used(db) <= budget:
                    break
                db.execute("DELETE FROM events WHERE job = ?", (job,))
                db.execute("DELETE FROM album_changes WHERE job = ?", (job,))
                db.execute("DELETE FROM jobs WHERE id = ?", (job,))
        self._shrink()

    def _shrink(self) -> None:
        with self._errors():
            db = self._db()
            if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:  # a store from before: convert once
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("VACUUM")
            else:
                # Python's execute() steps a pragma once, and incremental_vacuum
                # frees one page per step: executescript runs it to the end.
                db.executescript("PRAGMA incremental_vacuum;")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _prune(self, db: sqlite3.Connection) -> None:
        newest = f"SELECT id FROM jobs ORDER BY id DESC LIMIT {KEEP_JOBS}"
        db.execute(f"DELETE FROM events WHERE job NOT IN ({newest})")
        db.execute(f"DELETE FROM album_changes WHERE job NOT IN ({newest})")
        db.execute(f"DELETE FROM jobs WHERE id NOT IN ({newest})")

    # --- a running job ----------------------------------------------------

    def update(self, job: int, **fields: Any) -> None:
        assigns = ", ".join(f"{name} = ?" for name in fields)
        with self.transaction() as db:
            db.execute(f"UPDATE jobs SET {assigns} WHERE id = ?", (*fields.values(), job))

    def append(self, job: int, payloads: Sequence[dict[str, Any]], **fields: Any) -> None:
        """Add events (numbered 1, 2, 3, ... per job) and update the job, in one commit."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
            if row is None or row["status"] not in ACTIVE:  # already ended: keep its record
                return
            if fields:
                assigns = ", ".join(f"{name} = ?" for name in fields)
                db.execute(f"UPDATE jobs SET {assigns} WHERE id = ?", (*fields.values(), job))
            self._insert_events(db, row, payloads)
        self._notify()

    def add_committed(self, job: int, payloads: Sequence[dict[str, Any]], **counters: Any) -> None:
        """Under the lock: the items an ended job's process committed and
        died before reporting (runner.report_committed), added to its record
        after its ``done`` with its counters, and its notes of them dropped."""
        with self.transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
            if row is not None and payloads:
                assigns = ", ".join(f"{name} = ?" for name in counters)
                db.execute(f"UPDATE jobs SET {assigns} WHERE id = ?", (*counters.values(), job))
                self._insert_events(db, row, payloads)
            journal.drop_unreported(db, job)
        self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_events(self, timeout: float) -> None:
        """Sleep until this process appends events, or ``timeout`` (other
        processes' events are found by polling)."""
        with self._changed:
            self._changed.wait(timeout)

    def _insert_events(self, db: sqlite3.Connection, row: sqlite3.Row, payloads: Sequence[dict[str, Any]]) -> None:
        seq = row["last_event"]
        rows = []
        for payload in payloads:
            seq += 1
            failed = int(payload["type"] == "item" and not payload["success"])
            rows.append((row["id"], seq, payload["type"], json.dumps(payload), failed))
        db.executemany("INSERT INTO events (job, seq, type, data, failed) VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("UPDATE jobs SET last_event = ? WHERE id = ?", (seq, row["id"]))

    def cancel_requested(self, job: int) -> bool:
        rows = self.rows("SELECT cancel FROM jobs WHERE id = ?", (job,))
        return bool(rows and rows[0]["cancel"])

    def request_cancel(self, job: int) -> dict[str, Any] | None:
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET cancel = 1 WHERE id = ? AND status IN ('queued', 'running')", (job,)
            )
        return self.get(job)

    # --- reading ----------------------------------------------------------

    def get(self, job: int) -> dict[str, Any] | None:
        self.reap()
        rows = self.rows("SELECT * FROM jobs WHERE id = ?", (job,))
        return self._summary(rows[0]) if rows else None

    def list(self, limit: int = KEEP_JOBS) -> builtins.list[dict[str, Any]]:
        self.reap()
        rows = self.rows("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._summary(row) for row in rows]

    def active(self) -> dict[str, Any] | None:
        """The running job on this library, if any (its process holds the lock)."""
        return next((job for job in self.list(5) if job["status"] in ACTIVE), None)

    def reported_items(self, job: int) -> set[int]:
        """Ids of the items the job has reported (an ``item`` event each)."""
        rows = self.rows("SELECT json_extract(data, '$.item_id') AS item FROM events"
                          " WHERE job = ? AND type = 'item'", (job,))
        return {row["item"] for row in rows}

    def events_after(self, job: int, after: int, limit: int = 500) -> builtins.list[tuple[int, str, str]]:
        """(seq, type, json) of the job's events numbered above ``after``."""
        rows = self.rows(
            "SELECT seq, type, data FROM events WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job, after, limit),
        )
        return [(row["seq"], row["type"], row["data"]) for row in rows]

    def position(self, job: int) -> tuple[str, int] | None:
        """(status, last event id) of a job, cheaply: a stream polls it."""
        rows = self.rows("SELECT status, last_event FROM jobs WHERE id = ?", (job,))
        return (rows[0]["status"], rows[0]["last_event"]) if rows else None

    def item_events(self, job: int, *, status: str | None = None, limit: int = 50,
                    offset: int = 0) -> tuple[int, builtins.list[dict[str, Any]]]:
        """A job's per-item record: (how many items match, one page of their
        ``item`` events' data). ``status`` is ``failed``, ``succeeded`` or
        ``skipped``; without it every item, the failed ones first. A compacted
        job (``keep_within``) has only its failed items left."""
        where = ITEM_STATUS_SQL[status]
        with self._errors():
            db = self._db()
            count = db.execute(f"SELECT count(*) FROM events WHERE job = ? AND {where}", (job,)).fetchone()[0]
            rows = db.execute(f"SELECT data FROM events WHERE job = ? AND {where} "
                              "ORDER BY failed DESC, seq LIMIT ? OFFSET ?", (job, limit, offset)).fetchall()
        return count, [json.loads(row["data"]) for row in rows]

    def record_album_changes(self, job: int, changes: dict[int, dict[str, builtins.list[Any]]]) -> None:
        """The album fields the job is about to change (``{album: {field: [old,
        new]}}``), for its undo; written before the library's commit, as an
        intent is. An album changed twice keeps its first old value."""
        with self.transaction(durable=True) as db:
            for album, fields in changes.items():
                row = db.execute("SELECT changes FROM album_changes WHERE job = ? AND album = ?",
                                 (job, album)).fetchone()
                merged = json.loads(row[0]) if row else {}
                for key, (old, new) in fields.items():
                    merged[key] = [merged[key][0] if key in merged else old, new]
                db.execute("INSERT OR REPLACE INTO album_changes (job, album, changes) VALUES (?, ?, ?)",
                           (job, album, json.dumps(merged, ensure_ascii=False, default=str)))

    def album_changes(self, job: int) -> dict[int, dict[str, builtins.list[Any]]]:
        """What ``record_album_changes`` holds for the job, by album id."""
        rows = self.rows("SELECT album, changes FROM album_changes WHERE job = ?", (job,))
        return {row["album"]: json.loads(row["changes"]) for row in rows}

    def item_record(self, job: int) -> Iterator[dict[str, Any]]:
        """Every ``item`` event of the job, in order (what an undo reads: reversal.py)."""
        after = -1
        while True:
            with self._errors():
                rows = self._db().execute("SELECT seq, data FROM events WHERE job = ? AND type = 'item' AND seq > ?"
                                          " ORDER BY seq LIMIT 2000", (job, after)).fetchall()
            if not rows:
                return
            after = rows[-1]["seq"]
            yield from (json.loads(row["data"]) for row in rows)

    def _failures(self, db: sqlite3.Connection, job: int) -> builtins.list[dict[str, Any]]:
        rows = db.execute("SELECT data FROM events WHERE job = ? AND failed = 1 ORDER BY seq", (job,))
        return [failure_entry(json.loads(row["data"])) for row in rows]

    def failures(self, job: int) -> builtins.list[dict[str, Any]]:
        """The job's failed items so far, as ``done.results`` lists them."""
        with self._errors():
            return self._failures(self._db(), job)

    def _summary(self, row: sqlite3.Row, errors: bool = True) -> dict[str, Any]:
        summary: dict[str, Any] = {"job": row["id"]}
        summary.update({name: row[name] for name in SUMMARY_FIELDS})
        summary.update(
            force=bool(row["force"]), origin=row["origin"], host=row["host"], pid=row["pid"],
            last_event=row["last_event"], cancel_requested=bool(row["cancel"]), error=row["error"],
            resumed=json.loads(row["resumed"]) if row["resumed"] else [],
            compacted=bool(row["compacted"]), undoes=row["undoes"],
        )
        if errors:
            summary["errors"] = self.failures(row["id"])
        return summary


def _inserted(cursor: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just made (always set after an INSERT)."""
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the
    file. Switching a file still in rollback mode (a new one, or one from
    before) reads its header and then upgrades to an exclusive lock to write
    it; SQLite does not call the busy handler for an upgrade from a read lock
    (it could deadlock), so the connection's timeout does not cover it and
    a second process opening the file at that moment gets "database is
    locked" at once. Once the file is in WAL mode the pragma only reads."""
    deadline = time.monotonic() + WAL_SWITCH_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _used(db: sqlite3.Connection) -> int:
    """Bytes of the store's file in use (free pages excluded)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return int(pages * db.execute("PRAGMA page_size").fetchone()[0])


def unreadable_message(path: str, exc: BaseException) -> str:
    """What to do about a store SQLite refuses: a full disk, a read-only
    directory or a busy lock is not damage (nothing to move aside); a file that
    is not a database, or a malformed one, is."""
    if isinstance(exc, sqlite3.OperationalError):
        return (f"the job store {path} cannot be used right now ({exc}); free some space or make its "
                "directory writable, then run again (the store itself is not damaged)")
    return (
        f"the job store {path} cannot be used ({exc}). Move it aside and keep it for "
        f"inspection (mv '{path}' '{path}.broken'); the next run makes a new one. If a run was "
        "interrupted, its journal (table `intents`: pending moves and tag writes) is in the old file: "
        "items it moved may point "
        "at their old paths until `beet update` or a re-import finds them"
    )


_stores: dict[str, JobStore] = {}
_stores_lock = threading.Lock()


def _fresh_lock_after_fork() -> None:
    """A child forked while another thread held the lock would wait forever."""
    global _stores_lock
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def store_path(lib: Library) -> str:
    path = library_file(lib)
    if path == ":memory:":  # an in-memory library: a private store for this process
        return os.path.join(tempfile.gettempdir(), f"beets-unmarked-{os.getpid()}-{id(lib)}.db")
    return path + "-unmarked.db"


def store_for(lib: Library) -> JobStore:
    """The job store beside ``lib``, one instance per path in this process
    (a new one if the file was deleted or replaced since)."""
    path = store_path(lib)
    with _stores_lock:
        if path not in _stores or not _stores[path].intact():
            _stores[path] = JobStore(path)
        return _stores[path]
