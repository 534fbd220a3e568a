"""Claiming the library and running a job: the sequence every caller shares.

``open_job`` claims the library's one job slot (or says who holds it),
starts the heartbeat that tells other processes the job is alive, settles the
journal of any job that died, and selects the items. ``run_job`` runs the
engine with the job store as a sink and cancellation read from the store (so
a cancel from any web worker stops it before its next item).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
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


class Heartbeat:
    """Tells other processes this job's process is alive, from a side thread
    (the engine may sit in one long file operation), from the claim to the end."""

    def __init__(self, store: JobStore, job_id: int) -> None:
        self.store, self.job_id = store, job_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"unmarked-heartbeat-{job_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY):
            self.store.beat(self.job_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Job:
    """A claimed job, the items it will work on, and its heartbeat."""

    id: int
    op: Operation
    ids: list[int]
    force: bool
    heartbeat: Heartbeat


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
    heartbeat = Heartbeat(store, job_id)
    try:
        repaired = reconcile(lib, store, exclude_job=job_id, log=log.warning)
        if repaired:
            log.info("repaired {} paths left by an interrupted run", repaired)
        chosen = list(ids) if ids is not None else select_ids(lib, work_query(lib, op, query, force))
        store.update(job_id, total=len(chosen))
    except BaseException as exc:
        heartbeat.stop()
        end_failed(store, job_id, str(exc))
        raise
    return Job(job_id, op, chosen, force, heartbeat)


def end_failed(store: JobStore, job_id: int, error: str) -> None:
    """End a job that could not run at all; its stream gets a ``done``."""
    job = store.get(job_id) or {}
    store.append(job_id, [done_event(job_id, "failed", job.get("total", 0), 0, 0, 0, [], error)],
                 status="failed", finished=time.time(), error=error)


def run_job(lib: Library, store: JobStore, job: Job, rules: Rules, settings: Settings, log: BeetsLogger,
            sinks: Sequence[Sink] = ()) -> Summary:
    """Run a claimed job to its end; the store records every event."""
    engine = Engine(lib, job.op, rules, settings, log, journal=Journal(store, job.id), force=job.force)
    try:
        return engine.run(job.ids, Fanout([JobSink(store, job.id, job.op.name), *sinks]),
                          stop=lambda: store.cancel_requested(job.id))
    finally:
        job.heartbeat.stop()


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
        results = [failure_entry(vars(result)) for result in summary.failures]
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
