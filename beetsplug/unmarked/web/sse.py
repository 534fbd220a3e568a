"""Server-Sent Events from the job store: any process can stream any job.

A response replays the job's events after a given id from the store, and
follows new ones (woken at once by appends in this process, polling for other
processes) for at most ``stream_window`` seconds, then ends with ``retry:``;
the client asks again after that many milliseconds with ``Last-Event-ID``, as
EventSource does by itself. So a follower holds a worker only while it is
being answered: a response that never ended would hold one of gunicorn's sync
workers (or one of gthread's threads) for the whole job, and twenty followers
starved every other request of the server (the page waited 13.9 s of a 14 s
job). The cost is a delay of up to ``stream_retry`` per event, and one request
per follower per ``stream_retry`` while a job runs (bench/sse_followers.py).

A follower far behind gets the backlog at once, whatever the window, but at
most ``MAX_EVENTS`` per response, which then asks to be resumed at once: it
catches up in a few short responses rather than one long one. A stream
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
KEEPALIVE = 5.0  # seconds of silence before a comment (the contract says at most 15)
POLL = 0.2  # seconds between looks for events written by other processes
REAP_EVERY = 1.0  # seconds between checks that the job's process is alive
MAX_EVENTS = 2000  # per response (a follower far behind); then the client resumes at once
READ_LIMIT = 500  # events per read of the store (JobStore.events_after)
CATCH_UP_MS = 10  # the retry that asks for the rest of a long backlog
START_WAIT = 1.0  # seconds a stream from the beginning waits for the job's first event


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
        self.last_reap = 0.0

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
            rows = store.events_after(job, seq, READ_LIMIT)
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

    def reap_if_due(self, store: JobStore) -> None:
        """Check that running jobs' processes are alive (a dead one's job gets
        its `done` here), at most every REAP_EVERY seconds for all streams."""
        with self.lock:
            due = time.monotonic() - self.last_reap >= REAP_EVERY
            if due:
                self.last_reap = time.monotonic()
        if due:
            with self.reading:
                store.reap()


CHUNKS = ChunkCache()


def stream(store: JobStore, job: int, *, after: int, window: float, retry: float) -> Iterator[str]:
    """The job's events numbered above ``after``, for at most ``window``
    seconds (0: those already written), until ``done``; then ``retry:``.
    A stream from the job's beginning waits up to START_WAIT for its first
    event: a client that just started the job is owed its ``start``."""
    started = last_sent = time.monotonic()
    patience = max(window, START_WAIT) if after == 0 else window
    sent = 0
    while True:
        run = CHUNKS.after(store, job, after)
        if run:
            text, after, done = run
            yield text
            if done:
                return
            count = text.count("\nevent: ")  # data is one line of JSON: no newline inside
            sent += count
            if sent >= MAX_EVENTS:
                yield f"retry: {CATCH_UP_MS}\n\n"
                return
            last_sent, patience = time.monotonic(), window
            if count < READ_LIMIT and last_sent - started >= patience:  # caught up, time is up
                yield f"retry: {round(retry * 1000)}\n\n"
                return
            continue
        CHUNKS.reap_if_due(store)
        if _over(store, job, after):
            return  # resumed past the end of a job that has ended: nothing will come
        now = time.monotonic()
        if now - started >= patience:
            yield f"retry: {round(retry * 1000)}\n\n"
            return  # the client resumes from `after` with Last-Event-ID
        if now - last_sent >= KEEPALIVE:
            yield ": keep-alive\n\n"
            last_sent = now
        store.wait_for_events(min(POLL, patience - (now - started)))


def _over(store: JobStore, job: int, after: int) -> bool:
    """The job has ended and has no event numbered above ``after``."""
    position = store.position(job)
    return position is None or (position[0] not in ACTIVE and position[1] <= after)
