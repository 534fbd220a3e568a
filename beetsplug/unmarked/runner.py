"""Claiming the library and running a job: the sequence every caller shares.

``open_job`` claims the library's one job slot (or says who holds it),
settles the journal of any job that died, and selects the items.
``run_job`` runs the engine with the job store as a sink, a heartbeat that
tells other processes the job is alive, and cancellation read from the store
(so a cancel from any web worker stops it before its next item).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine import Engine, ItemResult, Journal, Settings, Sink, Summary
from .events import done_event, failure_entry, item_event, start_event
from .journal import reconcile
from .selection import select_ids, work_query

if TYPE_CHECKING:
    from beets.library import Library
    from beets.logging import BeetsLogger

    from .jobs import JobStore
    from .normalize import Rules
    from .operations import Operation

HEARTBEAT_EVERY = 2.0


@dataclass
class Job:
    """A claimed job and the items it will work on."""

    id: int
    op: Operation
    ids: list[int]
    force: bool


def open_job(lib: Library, store: JobStore, op: Operation, query: str | Sequence[str], force: bool,
             origin: str, log: BeetsLogger, ids: Sequence[int] | None = None,
             wait: Callable[[dict[str, Any]], None] | None = None) -> Job:
    """Claim the library (raise JobConflict, or call ``wait`` and wait), repair
    what a dead job left, and select the items (``ids`` given: those)."""
    text = query if isinstance(query, str) else " ".join(query)
    if wait is None:
        job_id = store.claim(op.name, text, force, origin)
    else:
        job_id = store.wait_claim(op.name, text, force, origin, on_wait=wait)
    try:
        repaired = reconcile(lib, store, exclude_job=job_id, log=log.warning)
        if repaired:
            log.info("repaired {} paths left by an interrupted run", repaired)
        chosen = list(ids) if ids is not None else select_ids(lib, work_query(lib, op, query, force))
        store.update(job_id, total=len(chosen))
    except BaseException as exc:
        end_failed(store, job_id, str(exc))
        raise
    return Job(job_id, op, chosen, force)


def end_failed(store: JobStore, job_id: int, error: str) -> None:
    """End a job that could not run at all; its stream gets a ``done``."""
    job = store.get(job_id) or {}
    store.append(job_id, [done_event(job_id, "failed", job.get("total", 0), 0, 0, 0, [], error)],
                 status="failed", finished=time.time(), error=error)


def run_job(lib: Library, store: JobStore, job: Job, rules: Rules, settings: Settings, log: BeetsLogger,
            sinks: Sequence[Sink] = ()) -> Summary:
    """Run a claimed job to its end; the store records every event."""
    engine = Engine(lib, job.op, rules, settings, log, journal=Journal(store, job.id), force=job.force)
    with heartbeat(store, job.id):
        return engine.run(job.ids, Fanout([JobSink(store, job.id, job.op.name), *sinks]),
                          stop=lambda: store.cancel_requested(job.id))


@contextmanager
def heartbeat(store: JobStore, job_id: int) -> Iterator[None]:
    """Tell other processes this job's process is alive, from a side thread
    (the engine may sit in one long file operation)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            store.beat(job_id)

    thread = threading.Thread(target=beat, name=f"unmarked-heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class JobSink:
    """Writes a run's events to the job store, one commit per engine batch."""

    def __init__(self, store: JobStore, job: int, op: str) -> None:
        self.store, self.job, self.op = store, job, op

    def start(self, total: int) -> None:
        self.store.append(self.job, [start_event(self.job, self.op, total)],
                          status="running", started=time.time(), total=total)

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        events = [item_event(self.job, current, summary.total, result) for current, result in numbered]
        self.store.append(self.job, events, **_counters(summary))

    def done(self, summary: Summary) -> None:
        results = [failure_entry(item_event(self.job, 0, 0, r)) for r in summary.failures]
        done = done_event(self.job, summary.status, summary.total, summary.succeeded, summary.failed,
                          summary.skipped, results, summary.error)
        self.store.append(self.job, [done], status=summary.status, finished=time.time(),
                          error=summary.error, **_counters(summary))


def _counters(summary: Summary) -> dict[str, int]:
    return {"current": summary.current, "succeeded": summary.succeeded,
            "failed": summary.failed, "skipped": summary.skipped}


class Fanout:
    """Several sinks as one."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def start(self, total: int) -> None:
        for sink in self.sinks:
            sink.start(total)

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        for sink in self.sinks:
            sink.items(numbered, summary)

    def done(self, summary: Summary) -> None:
        for sink in self.sinks:
            sink.done(summary)
