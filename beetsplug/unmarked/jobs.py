"""The job store: jobs, their events and the move journal, in SQLite beside the library.

Every process that works on a library (the CLI, each web server worker, the
import hook) opens the same store, so any of them can claim the one job slot,
report a job, stream its events, cancel it or notice that its process died.
WAL mode lets readers stream while the job writes; ``synchronous=NORMAL``
makes commits cheap (no fsync) yet safe against a killed process, which is
the failure the journal is for.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import done_event, failure_entry

if TYPE_CHECKING:
    from beets.library import Library

ACTIVE = ("queued", "running")
STALE_AFTER = 15.0  # seconds without a heartbeat before a job counts as dead
KEEP_JOBS = 50  # finished jobs (and their events) kept for the record

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
CREATE TABLE IF NOT EXISTS events (
    job INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL,
    kind TEXT NOT NULL,
    entity INTEGER NOT NULL,
    src BLOB NOT NULL,
    dst BLOB NOT NULL
);
"""

SUMMARY_FIELDS = (
    "op", "query", "status", "total", "current", "succeeded", "failed",
    "skipped", "created", "started", "finished",
)


class JobConflict(Exception):
    """Another job is active on this library."""

    def __init__(self, active: dict[str, Any]) -> None:
        self.active = active
        super().__init__(describe(active) + " is running on this library")


def describe(summary: dict[str, Any]) -> str:
    """'job 12 (process, from cli, pid 4711 on host, 30/600 done)'."""
    return (
        f"job {summary['job']} ({summary['op']}, from {summary['origin']}, "
        f"pid {summary['pid']} on {summary['host']}, "
        f"{summary['current']}/{summary['total']} done)"
    )


def how_to_stop(summary: dict[str, Any]) -> str:
    """What a user can do about an active job, by where it runs."""
    if summary["origin"] == "web":
        return f"cancel it on the /unmarked page (or POST /api/jobs/{summary['job']}/cancel)"
    return f"stop it with Ctrl-C where it runs (pid {summary['pid']} on {summary['host']})"


@dataclass(frozen=True)
class Move:
    """An intended move, written before the file moves (see journal.py)."""

    id: int
    job: int
    kind: str  # "item" (path) or "album" (artpath)
    entity: int
    src: bytes
    dst: bytes


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST = socket.gethostname()


def _alive(row: sqlite3.Row, now: float) -> bool:
    if now - row["heartbeat"] > STALE_AFTER:
        return False
    return row["host"] != HOST or pid_alive(row["pid"])


class JobStore:
    """One SQLite file per library; thread-safe (a connection per thread and process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._changed = threading.Condition()  # wakes this process's streams on new events
        self._db().executescript(SCHEMA)  # idempotent; executescript commits itself

    # --- connections -----------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():  # not across fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- claiming the library -------------------------------------------

    def claim(self, op: str, query: str, force: bool, origin: str) -> int:
        """Create a job if no live job holds the library; else JobConflict."""
        now = time.time()
        with self._write() as db:
            self._reap(db, now)
            active = db.execute(
                "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY id LIMIT 1"
            ).fetchone()
            if active is not None:
                raise JobConflict(self._summary(db, active, errors=False))
            self._prune(db)
            return db.execute(
                "INSERT INTO jobs (op, query, force, origin, status, created, host, pid, heartbeat)"
                " VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                (op, query, int(force), origin, now, HOST, os.getpid(), now),
            ).lastrowid

    def wait_claim(self, op: str, query: str, force: bool, origin: str, on_wait: Any = None, poll: float = 1.0) -> int:
        """Claim, waiting for the active job to end (``on_wait(summary)`` once)."""
        told = False
        while True:
            try:
                return self.claim(op, query, force, origin)
            except JobConflict as conflict:
                if on_wait and not told:
                    on_wait(conflict.active)
                    told = True
                time.sleep(poll)

    def _reap(self, db: sqlite3.Connection, now: float) -> None:
        """Mark jobs whose process died as interrupted, ending their event stream."""
        for row in db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall():
            if _alive(row, now):
                continue
            error = f"the process running it (pid {row['pid']} on {row['host']}) stopped"
            db.execute(
                "UPDATE jobs SET status = 'interrupted', finished = ?, error = ? WHERE id = ?",
                (now, error, row["id"]),
            )
            job = self._summary(db, db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
            done = done_event(job["job"], "interrupted", job["total"], job["succeeded"], job["failed"],
                              job["skipped"], job["errors"], error)
            self._insert_events(db, row, [done])

    def reap(self) -> None:
        """Reap dead jobs; a plain read unless one needs it (this runs on every poll)."""
        now = time.time()
        rows = self._db().execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
        if all(_alive(row, now) for row in rows):
            return
        with self._write() as db:
            self._reap(db, now)

    def _prune(self, db: sqlite3.Connection) -> None:
        keep = f"SELECT id FROM jobs ORDER BY id DESC LIMIT {KEEP_JOBS}"
        db.execute(f"DELETE FROM events WHERE job NOT IN ({keep})")
        db.execute(f"DELETE FROM jobs WHERE id NOT IN ({keep})")

    # --- a running job ----------------------------------------------------

    def update(self, job: int, **fields: Any) -> None:
        assigns = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as db:
            db.execute(f"UPDATE jobs SET {assigns} WHERE id = ?", (*fields.values(), job))

    def beat(self, job: int) -> None:
        self.update(job, heartbeat=time.time())

    def append(self, job: int, payloads: Sequence[dict[str, Any]], **fields: Any) -> None:
        """Add events (numbered 1, 2, 3, ... per job) and update the job, in one commit."""
        with self._write() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
            if row["status"] not in ACTIVE:  # already ended (e.g. reaped): keep its record
                return
            if fields:
                assigns = ", ".join(f"{name} = ?" for name in fields)
                db.execute(f"UPDATE jobs SET {assigns} WHERE id = ?", (*fields.values(), job))
            self._insert_events(db, row, payloads)
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
        row = self._db().execute("SELECT cancel FROM jobs WHERE id = ?", (job,)).fetchone()
        return bool(row and row["cancel"])

    def request_cancel(self, job: int) -> dict[str, Any] | None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET cancel = 1 WHERE id = ? AND status IN ('queued', 'running')", (job,)
            )
        return self.get(job)

    # --- reading ----------------------------------------------------------

    def get(self, job: int) -> dict[str, Any] | None:
        self.reap()
        db = self._db()
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
        return self._summary(db, row) if row else None

    def list(self, limit: int = KEEP_JOBS) -> list[dict[str, Any]]:
        self.reap()
        db = self._db()
        rows = db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._summary(db, row) for row in rows]

    def active(self) -> dict[str, Any] | None:
        """The live job on this library, if any."""
        return next((job for job in self.list(5) if job["status"] in ACTIVE), None)

    def events_after(self, job: int, after: int, limit: int = 500) -> list[tuple[int, str, str]]:
        """(seq, type, json) of the job's events numbered above ``after``."""
        rows = self._db().execute(
            "SELECT seq, type, data FROM events WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job, after, limit),
        ).fetchall()
        return [(row["seq"], row["type"], row["data"]) for row in rows]

    def _summary(self, db: sqlite3.Connection, row: sqlite3.Row, errors: bool = True) -> dict[str, Any]:
        summary: dict[str, Any] = {"job": row["id"]}
        summary.update({name: row[name] for name in SUMMARY_FIELDS})
        summary.update(
            force=bool(row["force"]), origin=row["origin"], host=row["host"], pid=row["pid"],
            last_event=row["last_event"], cancel_requested=bool(row["cancel"]), error=row["error"],
        )
        if errors:
            failures = db.execute(
                "SELECT data FROM events WHERE job = ? AND failed = 1 ORDER BY seq", (row["id"],)
            ).fetchall()
            summary["errors"] = [failure_entry(json.loads(f["data"])) for f in failures]
        return summary

    # --- the move journal ---------------------------------------------------

    def intend(self, job: int, kind: str, entity: int, src: bytes, dst: bytes) -> int:
        with self._write() as db:
            return db.execute(
                "INSERT INTO moves (job, kind, entity, src, dst) VALUES (?, ?, ?, ?, ?)",
                (job, kind, entity, src, dst),
            ).lastrowid

    def forget(self, move_ids: Sequence[int]) -> None:
        if not move_ids:
            return
        with self._write() as db:
            db.executemany("DELETE FROM moves WHERE id = ?", [(i,) for i in move_ids])

    def pending_moves(self, exclude_job: int | None = None) -> list[Move]:
        rows = self._db().execute(
            "SELECT * FROM moves WHERE job IS NOT ? ORDER BY id", (exclude_job,)
        ).fetchall()
        return [Move(r["id"], r["job"], r["kind"], r["entity"], bytes(r["src"]), bytes(r["dst"])) for r in rows]


_stores: dict[str, JobStore] = {}
_stores_lock = threading.Lock()


def store_path(lib: Library) -> str:
    path = os.fsdecode(lib.path)
    if path == ":memory:":  # an in-memory library: a private store for this process
        return os.path.join(tempfile.gettempdir(), f"beets-unmarked-{os.getpid()}-{id(lib)}.db")
    return path + "-unmarked.db"


def store_for(lib: Library) -> JobStore:
    """The job store beside ``lib``, one instance per path in this process."""
    path = store_path(lib)
    with _stores_lock:
        if path not in _stores:
            _stores[path] = JobStore(path)
        return _stores[path]
