"""Server-Sent Events from the job store: any process can stream any job.

A stream replays the job's events after a given id from the store, then
follows new ones (woken at once by appends in this process, polling for other
processes), with keep-alive comments while nothing happens. On a server
without threads (gunicorn's sync worker, which is killed when one response
outlives ``--timeout``) a stream ends after a short window and the client
resumes with ``Last-Event-ID``, as EventSource does by itself. A stream
resumed past a job's last event ends once the job has ended (a client may
hold an id from before a store was replaced, or simply a wrong one).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..jobs import ACTIVE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..jobs import JobStore

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = 10.0  # seconds of silence before a comment (the contract says at most 15)
POLL = 0.2  # seconds between looks for events written by other processes
REAP_EVERY = 1.0  # seconds between checks that the job's process is alive
RETRY_MS = 2000  # EventSource reconnection delay after a network error
RETRY_WINDOWED_MS = 100  # ... after a windowed stream ends on purpose


def format_event(seq: int, kind: str, data: str) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n"


class ChunkCache:
    """Formatted runs of events, shared by the streams of this process.

    Many clients following one job ask for the same events at the same
    moment. One of them reads and formats; the others wait for it and reuse
    its text. Reads are also taken one at a time: fifty threads each holding
    a read open on the job store exhausted SQLite's WAL reader slots and made
    the job itself wait (three times slower, measured with bench/sse_load.py).
    Events never change once written, so a cached run stays true; only
    "nothing new yet" is never cached.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.runs: OrderedDict[tuple[str, int, int], tuple[str, int, bool]] = OrderedDict()
        self.lock = threading.Lock()  # guards `runs`
        self.reading = threading.Lock()  # one store read at a time

    def _cached(self, key: tuple[str, int, int]) -> tuple[str, int, bool] | None:
        with self.lock:
            if key in self.runs:
                self.runs.move_to_end(key)
                return self.runs[key]
        return None

    def after(self, store: JobStore, job: int, seq: int) -> tuple[str, int, bool] | None:
        """(text, last id, ended with done) for the events after ``seq``, or None."""
        key = (store.path, job, seq)
        run = self._cached(key)
        if run:
            return run
        with self.reading:
            run = self._cached(key)  # read by another stream while we waited
            if run:
                return run
            rows = store.events_after(job, seq)
        if not rows:
            return None
        done = next((i for i, row in enumerate(rows) if row[1] == "done"), None)
        rows = rows if done is None else rows[:done + 1]
        run = ("".join(format_event(*row) for row in rows), rows[-1][0], done is not None)
        with self.lock:
            self.runs[key] = run
            while len(self.runs) > self.size:
                self.runs.popitem(last=False)
        return run

    def reap(self, store: JobStore) -> None:
        """Check the job's process is alive (a dead one gets its `done` here)."""
        with self.reading:
            store.reap()


CHUNKS = ChunkCache()


def stream(store: JobStore, job: int, *, after: int, window: float | None) -> Iterator[str]:
    """The job's events numbered above ``after``, until ``done`` (or the window ends)."""
    started = last_sent = last_reap = time.monotonic()
    yield f"retry: {RETRY_WINDOWED_MS if window is not None else RETRY_MS}\n\n"
    while True:
        run = CHUNKS.after(store, job, after)
        if run:
            text, after, done = run
            yield text
            if done:
                return
            last_sent = time.monotonic()
        now = time.monotonic()
        if window is not None and now - started >= window:
            return  # the client resumes from `after` with Last-Event-ID
        if run:
            continue
        if now - last_sent >= KEEPALIVE:
            yield ": keep-alive\n\n"
            last_sent = now
        if now - last_reap >= REAP_EVERY:
            CHUNKS.reap(store)
            last_reap = now
            if _over(store, job, after):
                return  # resumed past the end of a job that has ended: nothing will come
        store.wait_for_events(POLL)


def _over(store: JobStore, job: int, after: int) -> bool:
    """The job has ended and has no event numbered above ``after``."""
    position = store.position(job)
    return position is None or (position[0] not in ACTIVE and position[1] <= after)
