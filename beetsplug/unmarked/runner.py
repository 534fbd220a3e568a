"""A job's life, in one place: the sequence every caller (CLI, web, import) shares.

    config = JobConfig.from_plugin(plugin.config) # bad settings fail here, nothing claimed
    with open_job(lib, op, query, ...) as job:    # the library lock, the job's row
        job.run(sinks)                            # settle, select, engine, release

``open_job`` reads the config first, then takes the library lock (claim.py),
settles what dead processes left (their job rows, their journal: the one
sense of "settle" in this package), and creates the job's row; nothing runs
between the claim and the run that could leak the lock, and leaving the
``with`` block releases it on every path. ``adopt``
does the same for a server process that finds a web job whose process died:
it resumes that job under the same id, from the next item - unless the path
configuration changed meanwhile (layout.py): then it ends the job ``failed``,
saying what changed and what to run (``Job.end_under_changed_layout``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import confuse

from . import journal, stored
from .claim import LibraryLock, wait_for
from .config import check
from .engine import Engine, Settings, Sink
from .errors import ConfigError, Terminated
from .events import done_event, item_event, start_event
from .jobs import ACTIVE, HOST, JobConflict, JobStore, store_for
from .journal import Journal
from .layout import changed, snapshot
from .normalize import Rules
from .operations import get_operation
from .repair import reconcile
from .results import ItemResult, Summary, readable
from .reversal import AS_BEFORE, UNDO, NotUndoable, reversal_of
from .selection import select_ids, work_query

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType, TracebackType

    from beets.library import Library
    from beets.logging import BeetsLogger

    from .journal import Unreported
    from .operations import Operation
    from .reversal import Reversal



@dataclass(frozen=True)
class JobConfig:
    """The validated settings a run needs, read before anything is claimed."""

    rules: Rules
    settings: Settings
    history_bytes: int = 64 << 20  # the job store's budget (``job_history_mb``)

    @classmethod
    def from_plugin(cls, config: confuse.ConfigView) -> JobConfig:
        check(config)  # the same checks as when the plugin loads, for callers that skip loading
        try:
            budget = int(config["job_history_mb"].as_number() * (1 << 20))
            return cls(Rules.from_config(config), Settings.from_config(config), max(budget, 1 << 20))
        except confuse.ConfigError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from exc


class Job:
    """A claimed job. Enter it (``with``) to run it; leaving releases the lock."""

    def __init__(self, lib: Library, store: JobStore, lock: LibraryLock, job_id: int, op: Operation, *,
                 query: str, force: bool, config: JobConfig, log: BeetsLogger,
                 ids: Sequence[int] | None = None, resume: Summary | None = None,
                 unreported: dict[int, Unreported] | None = None, layout_changed: Sequence[str] = (),
                 reversal: Reversal | None = None) -> None:
        self.lib, self.store, self.lock, self.id, self.op = lib, store, lock, job_id, op
        self.reversal = reversal  # an undo job: what it puts back (reversal.py)
        self.query, self.force, self.config, self.log = query, force, config, log
        self.ids = list(ids) if ids is not None else store.ids(job_id)
        self.resume = resume
        self.unreported = unreported  # a resumed job: what its stopped run committed, never reported
        self.layout_changed = list(layout_changed)  # an adopted job: path settings changed since it started

    def __enter__(self) -> Job:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(exc)

    def close(self, exc: BaseException | None = None) -> None:
        """Release the lock; a job that never reached its end is recorded as failed."""
        if not self.lock.held:
            return
        try:
            summary = self.store.get(self.id)
            if summary and summary["status"] in ("queued", "running"):
                end_failed(self.store, self.id, str(exc) if exc else "stopped before it ran")
            with self.store.transaction() as db:
                journal.drop_unreported(db, self.id)
            self.store.keep_within(self.config.history_bytes)
        finally:
            self.lock.release()

    @property
    def total(self) -> int:
        return len(self.ids) if self.ids is not None else 0

    def select(self) -> list[int]:
        """The job's items, selected once and recorded (a resumed job reuses them)."""
        if self.ids is None:
            self.ids = select_ids(self.lib, work_query(self.lib, self.op, self.query, force=self.force))
            self.store.set_ids(self.id, self.ids)
        return self.ids

    def run(self, sinks: Sequence[Sink] = ()) -> Summary:
        """Run to the end (or cancel, or a run-ending error); the store records every event."""
        ids = self.select()
        if self.layout_changed:
            return self.end_under_changed_layout(sinks)
        if self.resume:  # what the dead process did not report (a redone item comes out of order)
            done = self.store.reported_items(self.id)
            remaining = [item for item in ids if item not in done]
        else:
            remaining = ids
        settings, rules = self.config.settings, self.config.rules
        engine = Engine(self.lib, self.op, rules=rules, settings=settings, log=self.log,
                        journal=Journal(self.store, self.id),
                        force=self.force, guard=self.lock.check, claim=self.lock, reversal=self.reversal)
        try:
            with stop_signals_raise():
                return engine.run(remaining, Fanout([JobSink(self.store, self.id, self.op.name), *sinks]),
                                  stop=lambda: self.store.cancel_requested(self.id), resume=self.resume,
                                  unreported=self.unreported)
        finally:
            self.close()

    def end_under_changed_layout(self, sinks: Sequence[Sink] = ()) -> Summary:
        """An adopted job whose path configuration changed since it started:
        it ends ``failed``, saying what changed and what to run; no file is touched.

        Resuming it would finish with two layouts (what its first part moved
        under the old paths, the rest under the new), and re-planning it would
        move items it has already reported, and carry out moves nobody
        confirmed (the plan the page showed was the old configuration's).
        Nothing is lost by stopping: the items its first part renamed carry
        the old configuration's fingerprint, so the next rename - a new job,
        or ``beet rename-unmarked`` - takes them along with the ones it never
        reached. What that part committed without reporting is reported here,
        as done: it was."""
        sink = Fanout([JobSink(self.store, self.id, self.op.name), *sinks])
        record = self.store.get(self.id) or {}
        summary = Summary.from_record(record, "running") if record else Summary(self.total)
        committed = committed_unreported(self.lib, self.unreported or {}, self.op.markers)
        if committed:
            sink.items([(summary.count(result), result) for result in committed], summary)
        summary.status = "failed"
        summary.error = (
            f"the path configuration changed since this job started ({', '.join(self.layout_changed)}): "
            f"{summary.current} of its {summary.total} items were reached under the old one "
            f"({summary.succeeded} done), and nothing more was done; start a new {self.op.name} job "
            f"(or run `beet {self.op.command}`): it moves every item to where the configuration now in force "
            "puts it, those this job moved included")
        self.log.warning("web job {}: {}", self.id, summary.error)
        sink.done(summary)
        self.close()
        return summary


def committed_unreported(lib: Library, unreported: dict[int, Unreported], markers: Sequence[str],
                         reversal: Reversal | None = None) -> list[ItemResult]:
    """The items a stopped run committed and never reported (still marked
    with the time its journal noted; an undo's: as before their job), as the
    results it would have sent."""
    if not unreported:
        return []
    with lib.music_dir_context(), lib.transaction() as tx:
        rows = stored.rows(tx, sorted(unreported))
    results = []
    for item_id, row in sorted(rows.items()):
        item, committed = stored.model(lib, row), unreported[item_id]
        if reversal is None:
            done = stored.marked_at(row[2], markers, committed.time)
        else:
            plan = reversal.items.get(item_id)
            done = plan is not None and plan.state(item)[0] == AS_BEFORE
        if done:
            results.append(ItemResult.committed(item_id, committed.result, readable(item.path)))
    return results


def report_committed(lib: Library, store: JobStore, job_id: int) -> None:
    """Under the lock: a job whose process died and that nobody resumes (from
    the command line, the import hook; a web job another superseded): what its
    last commit recorded but it never reported goes into its record now, so
    the record - and an undo of the job - has every item it changed. A web job
    left to resume keeps its notes for the run that resumes it (``adopt``)."""
    job = store.get(job_id)
    if job is not None and job["status"] in ACTIVE:
        return
    results: list[ItemResult] = []
    if job is not None:
        op = UNDO if job["op"] == UNDO.name else get_operation(job["op"])
        try:
            reversal = reversal_of(store, job["undoes"]) if op is UNDO else None
            results = committed_unreported(lib, journal.unreported(store, job_id), op.markers, reversal)
        except NotUndoable:
            pass
    summary = Summary.from_record(job) if job is not None else Summary(0)
    events = [item_event(job_id, summary.count(result), summary.total, result) for result in results]
    store.add_committed(job_id, events, **_counters(summary))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While a run goes on in the main thread, SIGTERM and SIGHUP raise
    ``Terminated`` (the engine puts its batch back, as after Ctrl-C) instead of
    killing the process between a file's move and its commit. A signal the
    run was started with ignored stays ignored (``nohup``: a closed terminal
    must not stop it). A server's job thread cannot take signals; its
    process dying is covered by adoption."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_in_background(job: Job, log: BeetsLogger) -> None:
    """A server thread's job (started by a request or adopted): run it to its
    end; whatever stops it is in its record, and the lock is released."""
    try:
        with job:
            job.run()
    except Exception as exc:
        log.error("job {} stopped: {}", job.id, exc)


def _take(store: JobStore, wait: Callable[[dict[str, Any] | None], None] | None) -> LibraryLock:
    """The library lock now, or JobConflict; with ``wait``, call it once and wait."""

    def take() -> LibraryLock | None:
        return LibraryLock.take(store.lock_path, store.path, store.identity)

    lock = take()
    if lock is not None:
        return lock
    active = store.active()
    if wait is None:
        raise JobConflict(active, store.lock_path)
    wait(active)
    return wait_for(take)


def open_job(lib: Library, op: Operation, query: str | Sequence[str], *, force: bool, origin: str,
             config: JobConfig, log: BeetsLogger, ids: Sequence[int] | None = None,
             wait: Callable[[dict[str, Any] | None], None] | None = None) -> Job:
    """Claim the library (JobConflict, or ``wait`` and wait), settle what dead
    processes left, and create the job. ``ids`` given: those items, else the query's."""
    text = query if isinstance(query, str) else " ".join(query)
    store = store_for(lib)
    lock = _take(store, wait)
    try:
        settle(lib, store, log)
        if ids is None:  # selected under the lock, before the row: a failed selection leaves no job
            ids = select_ids(lib, work_query(lib, op, query, force=force))
        job_id = store.create(op.name, text, force=force, origin=origin, layout=snapshot())
        store.set_ids(job_id, ids)
    except BaseException:
        lock.release()
        raise
    return Job(lib, store, lock, job_id, op, query=text, force=force, config=config, log=log, ids=ids)


def open_undo(lib: Library, undone: int, *, origin: str, config: JobConfig, log: BeetsLogger,
              wait: Callable[[dict[str, Any] | None], None] | None = None) -> Job:
    """Claim the library as ``open_job`` does and create a job that undoes
    job ``undone``: its items are those the job did (``NotUndoable``: it
    cannot be undone, and nothing was created)."""
    store = store_for(lib)
    lock = _take(store, wait)
    try:
        settle(lib, store, log)
        reversal = reversal_of(store, undone)  # under the lock: the job has ended and stays as recorded
        ids = reversal.order()
        job_id = store.create(UNDO.name, f"undo of job {undone}", force=False, origin=origin, undoes=undone)
        store.set_ids(job_id, ids)
    except BaseException:
        lock.release()
        raise
    return Job(lib, store, lock, job_id, UNDO, query=f"undo of job {undone}", force=False, config=config, log=log,
               ids=ids, reversal=reversal)


def settle(lib: Library, store: JobStore, log: BeetsLogger) -> None:
    """Under the lock: end dead processes' jobs and repair their journal.

    A web job is left for a server process to resume (``adopt``): only a
    server can show it, and one adopts it as soon as it runs.
    """
    store.end_orphans()
    for job_id in sorted({intent.job for intent in journal.pending(store, kinds=[journal.UNREPORTED])}):
        report_committed(lib, store, job_id)
    repaired = reconcile(lib, store, log=log.warning)
    if repaired:
        log.info("repaired {} files left by an interrupted run", repaired)


def adopt(lib: Library, config: JobConfig, log: BeetsLogger) -> Job | None:
    """A server's part: take over a web job whose process died, if any and if
    the library is free. Returns the claimed job, ready to ``run``."""
    store = store_for(lib)
    if not store.orphans():  # a plain read; the lock only when there is work
        return None
    lock = LibraryLock.take(store.lock_path, store.path, store.identity, patience=0)
    if lock is None:
        return None
    try:
        left = store.end_orphans()
        repaired = reconcile(lib, store, log=log.warning)
        if not left:
            lock.release()
            return None
        for other in left[:-1]:  # only one can be resumed; the newest wins
            store.interrupt(other["job"], "superseded by a newer web job")
        job = left[-1]
        op = UNDO if job["op"] == UNDO.name else get_operation(job["op"])
        try:
            reversal = reversal_of(store, job["undoes"]) if op is UNDO else None
        except NotUndoable as exc:  # (its job's record compacted meanwhile): it ends, saying so
            end_failed(store, job["job"], f"it can no longer resume: {exc}")
            lock.release()
            return None
        recorded = store.layout(job["job"])  # (None: started by a release that did not record it)
        moved = changed(recorded, snapshot()) if op.rename and recorded is not None else []
        unreported = journal.unreported(store, job["job"])
        store.adopt(job["job"], f"resumed by pid {os.getpid()} on {HOST} at {time.time():.0f} "
                                f"({repaired} files repaired)")
        log.info("resuming web job {} ({}/{} done) after its process stopped",
                 job["job"], job["current"], job["total"])
    except BaseException:
        lock.release()
        raise
    resume = Summary.from_record(job) if job["status"] == "running" else None
    return Job(lib, store, lock, job["job"], op, query=job["query"], force=job["force"],
               config=config, log=log, resume=resume, unreported=unreported, layout_changed=moved, reversal=reversal)


def end_failed(store: JobStore, job_id: int, error: str) -> None:
    """End a job that could not run (on); its stream gets a ``done``."""
    job = store.get(job_id) or {}
    counters = Summary.from_record(job, "failed", error) if job else Summary(0, "failed", error=error)
    store.append(job_id, [done_event(job_id, counters, store.failures(job_id))],
                 status="failed", finished=time.time(), error=error)


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
        # Failures come from the record, which also holds those of a run this one resumed.
        done = done_event(self.job, summary, self.store.failures(self.job))
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
