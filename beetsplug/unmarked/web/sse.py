"""Server-Sent Events from the job store: any process can stream any job.

A stream replays the job's events after a given id from the store, then
follows new ones (woken at once by appends in this process, polling for other
processes), with keep-alive comments while nothing happens. On a server
without threads (gunicorn's sync worker, which is killed when one response
outlives ``--timeout``) a stream ends after a short window and the client
resumes with ``Last-Event-ID``, as EventSource does by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..jobs import JobStore

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = 10.0  # seconds of silence before a comment (the contract says at most 15)
POLL = 0.2  # seconds between looks for events written by other processes
REAP_EVERY = 1.0  # seconds between checks that the job's process is alive
RETRY_MS = 2000  # EventSource reconnection delay after a network error
RETRY_WINDOWED_MS = 100  # ... after a windowed stream ends on purpose


def format_event(seq: int, kind: str, data: str) -> str:
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n"


def stream(store: JobStore, job: int, after: int, window: float | None) -> Iterator[str]:
    """The job's events numbered above ``after``, until ``done`` (or the window ends)."""
    started = last_sent = last_reap = time.monotonic()
    yield f"retry: {RETRY_WINDOWED_MS if window is not None else RETRY_MS}\n\n"
    while True:
        rows = store.events_after(job, after)
        if rows:
            chunk = []
            for seq, kind, data in rows:
                chunk.append(format_event(seq, kind, data))
                after = seq
                if kind == "done":
                    yield "".join(chunk)
                    return
            yield "".join(chunk)
            last_sent = time.monotonic()
        now = time.monotonic()
        if window is not None and now - started >= window:
            return  # the client resumes from `after` with Last-Event-ID
        if rows:
            continue
        if now - last_sent >= KEEPALIVE:
            yield ": keep-alive\n\n"
            last_sent = now
        if now - last_reap >= REAP_EVERY:
            store.reap()  # a job whose process died gets its `done` event here
            last_reap = now
        store.wait_for_events(POLL)
