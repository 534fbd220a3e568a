"""The engine: one operation over a list of item ids, for every caller.

The CLI, the web jobs and the import hook all hand ids to ``Engine.run`` and
differ only in the ``Sink`` that shows what happens. Per item, the same
steps, each in a module of its own:

    plan (planner.py) -> journal + hand out (executor.py, a worker: workers.py)
        -> commit (commit.py) -> report (the sinks)
    and on any early exit: undo (undo.py)

An undo of a job (reversal.py) is a run like the others: only its plans
come from the job's record instead of the rules and path formats.

states.py lists an item's states and the moves between them. Items are
committed in batches: one library transaction holds the item changes and
their markers together, bounded by count and by time so other readers are
never locked out for long. A batch's events are sent after its commit, so
"success" always means the marker is in the library; at the end every
selected item must have exactly one outcome (``_account``), or the run fails
naming the ones it cannot account for.

A batch is worked in waves of a few dozen items: their rows are read in one
query, their file work journaled in one transaction and handed out together.
When the helper process computes a rename's destinations, the next batch's
first wave is read while a batch commits and its destinations asked of the
helper then (waves.py: no file of that wave is touched, nor anything
journaled, before the commit).

Files and library agree at every exit. Each item is read from the library
just before its file work, and the commit leaves out items another program
changed meanwhile (commit.py): their files are put back and they are done
again from the new state. A run that cannot commit (library locked past the
retries or failing, claim lost, job store unusable, Ctrl-C, a helper that
stopped) puts its uncommitted batch back on disk - files moved back, the
fields it wrote put back - before it stops, and says so. A journal intent is
forgotten only once what it describes is committed or undone; anything that
cannot be undone stays for the next run (repair.py).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import beets
from beets import util

from .art import ArtMover
from .batch import Batch, Touch, chunks, few
from .beets_compat import plugin_getters_fixed, release_interrupted_transaction
from .commit import Committer
from .config import DEFAULTS as CONFIG_DEFAULTS
from .errors import Cancelled, Terminated
from .executor import Executor
from .files import drop_backup
from .journal import NoJournal
from .moves import sync_dirs
from .planner import Planner
from .results import ItemResult, Summary, readable
from .signals import signals_deferred
from .transaction import rolled_back
from .undo import Undo, why
from .waves import Waves

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .claim import LibraryLock
    from .journal import Journal, Unreported
    from .normalize import Rules
    from .operations import Operation
    from .reversal import Reversal


class Sink(Protocol):
    """Where a run's events go: a progress bar, the job store, a log."""

    def start(self, total: int) -> None: ...

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None: ...

    def done(self, summary: Summary) -> None: ...


@dataclass(frozen=True)
class Settings:
    """The engine's knobs; defaults are the plugin's config defaults (one place)."""

    batch_size: int = CONFIG_DEFAULTS["batch_size"]
    batch_seconds: float = CONFIG_DEFAULTS["batch_seconds"]
    commit_attempts: int = 6  # each waits up to beets' `timeout` for the lock

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        return cls(
            batch_size=max(1, config["batch_size"].get(int)),
            batch_seconds=max(0.0, config["batch_seconds"].as_number()),
        )


REDO_ATTEMPTS = 2  # an item another writer changed mid-batch is done again from its new state, this often


class Engine:
    """Runs one operation; construct per run.

    ``guard`` (fencing) is called before every file operation and every
    commit; it raises ``ClaimLost`` once this process no longer owns the
    library, and the run then does no more forward work: it puts its
    uncommitted batch back on disk and stops, failed. ``claim`` is shared
    with the helper process (which checks it like ``guard`` before each
    file); without one, no helper.
    """

    def __init__(self, lib: Library, op: Operation, *, rules: Rules, settings: Settings, log: BeetsLogger,
                 journal: Journal | None = None, force: bool = False, pretend: bool = False,
                 guard: Callable[[], None] | None = None, claim: LibraryLock | None = None,
                 reversal: Reversal | None = None) -> None:
        if not pretend and journal is None:
            raise ValueError("a real run needs the journal")
        self.lib, self.op, self.settings, self.log, self.pretend = lib, op, settings, log, pretend
        self.guard: Callable[[], None] = guard or (lambda: None)
        journaled = journal if journal is not None else NoJournal()
        id3v23 = beets.config["id3v23"].get(bool)
        self.clutter = beets.config["clutter"].as_str_seq()
        self.planner = Planner(lib, op, rules, force=force, pretend=pretend, log=log, reversal=reversal)
        self.executor = Executor(lib, op, self.planner, journaled, guard=self.guard, log=log, claim=claim,
                                 id3v23=id3v23, clutter=self.clutter)
        self.committer = Committer(lib, journaled, self.planner, guard=self.guard, log=log,
                                   attempts=settings.commit_attempts, pretend=pretend)
        self.undo = Undo(lib, journaled, log=log, id3v23=id3v23, clutter=self.clutter,
                         media_changes=self.planner.media_changes)
        self.art = ArtMover(lib, journaled, guard=self.guard, log=log, clutter=self.clutter,
                            store=self.committer.store_rows, destination=reversal.art_back if reversal else None)
        self.waves = Waves(op, settings, self.planner, self.executor, pretend=pretend)
        self.journal = journaled
        self._batch = Batch()  # the one being worked on (the undo's, if the run stops)
        self._albums_stored = False  # the next chunk's normalized albums went with the last commit
        self._ahead: Batch | None = None  # the next batch, its first wave begun while this one commits
        self._redone: Counter[int] = Counter()
        self._reported: Counter[int] = Counter()  # item id -> outcomes reported (exactly one each, see _account)

    # --- the run ------------------------------------------------------------

    def run(self, ids: Sequence[int], sink: Sink, stop: Callable[[], bool] = lambda: False, *,
            resume: Summary | None = None, unreported: dict[int, Unreported] | None = None) -> Summary:
        """Run over ``ids``; the summary says how it ended.

        With ``resume``, continue that run: its counters go on (``total`` stays
        as given), ``ids`` are the ones it had not reached, and no ``start`` is
        sent (the job's stream has it already). ``unreported`` holds what the
        stopped run's journal said it was committing: items, the exact time
        their markers were given, and the results it would have reported. An
        item still marked with that time was done by that run (committed, never
        reported): it is reported as that result, not as skipped; marked
        otherwise, by someone else. (An undo: an item as before its job.)

        Every exit leaves files and library in agreement: an error that ends
        the run (library locked or failing, claim lost, job store unreadable)
        and Ctrl-C put the uncommitted batch back on disk first; the summary's
        ``error`` says what happened to it. Ctrl-C (and any other
        ``BaseException``) is re-raised after ``done``.
        """
        self.executor.cancelled = stop
        if resume is None:
            summary = Summary(total=len(ids))
            sink.start(len(ids))
        else:
            summary = resume
            summary.error = None
            self.planner.unreported = unreported or {}
        # Paths expand in any thread; plugins' field getters are worked out once.
        with self.lib.music_dir_context(), plugin_getters_fixed():
            try:
                summary.status = "completed"
                if not self.pretend:
                    self.executor.start(len(ids))
                if self._run_chunks(ids, summary, sink, stop):
                    summary.status = "cancelled"
                elif self.planner.reversal is not None and not self.pretend:
                    self._put_albums_back()
                self.executor.release_all()
                self._account(ids, summary)
            except BaseException as exc:
                with signals_deferred():  # a second Ctrl-C must not cut the undo short
                    self._abort(exc, summary, sink)
                    sink.done(summary)
                if isinstance(exc, Exception):
                    return summary
                raise
            finally:
                self.executor.end()
        sink.done(summary)
        return summary

    def _run_chunks(self, ids: Sequence[int], summary: Summary, sink: Sink, stop: Callable[[], bool]) -> bool:
        """Every chunk of ``batch_size`` ids in turn; True if asked to stop."""
        queues = [deque(chunk) for chunk in chunks(ids, self.settings.batch_size)]
        for number, queue in enumerate(queues):
            later = queues[number + 1] if number + 1 < len(queues) else deque()
            if self._run_chunk(queue, later, summary, sink, stop):
                return True
        # begun while the last batch committed: its items are the last
        return self._ahead is not None and self._run_chunk(deque(), deque(), summary, sink, stop)

    def _account(self, ids: Sequence[int], summary: Summary) -> None:
        """Every selected item has exactly one outcome: a run that cannot say
        what happened to an item is not "completed" - it fails, naming them.
        A cancelled run leaves the items it did not reach unmarked (the
        summary's ``current`` stops short of ``total``)."""
        # (a cancelled run may leave items unreported; never one reported twice or unselected)
        missing = [] if summary.status == "cancelled" else [i for i in ids if self._reported[i] == 0]
        twice = sorted(item_id for item_id, count in self._reported.items() if count > 1)
        strays = sorted(set(self._reported) - set(ids))
        if not (missing or twice or strays):
            return
        problems = []
        if missing:
            problems.append(f"{len(missing)} of the {len(ids)} selected items got no outcome "
                            f"(ids {few(missing)}); they stay unmarked")
        if twice:
            problems.append(f"{len(twice)} items were reported twice (ids {few(twice)})")
        if strays:
            problems.append(f"{len(strays)} items were reported that were not selected (ids {few(strays)})")
        summary.status = "failed"
        summary.error = "the run could not account for every item: " + "; ".join(problems)
        self.log.error("{}", summary.error)

    # --- chunks, batches, waves -------------------------------------------------

    def _run_chunk(self, queue: deque[int], later: deque[int], summary: Summary, sink: Sink,
                   stop: Callable[[], bool]) -> bool:
        """Process one chunk of ids (``queue``, emptied as it goes); return
        True if asked to stop. ``later`` is the next chunk's: a batch's commit
        may begin its first wave (``Waves.look_ahead``)."""
        # Path formats read album-level fields from the album row, so a chunk's
        # albums the rules change are stored before any of its items moves:
        # with the commit of the chunk before's last batch (one commit a batch),
        # or on their own for the first chunk. --pretend stores them in a
        # transaction it rolls back at the end of the chunk (held only then).
        albums = [] if self._albums_stored else self._normalized_albums(list(queue))
        self._albums_stored = False
        scope: AbstractContextManager[Any] = rolled_back(self.lib) if self.pretend and albums else nullcontext()
        with scope:
            if albums:
                self.committer.store_albums(albums)
            while True:
                batch, self._ahead = self._ahead or Batch(), None  # begun while the last batch committed
                self._batch = batch
                if not queue and not batch.outcomes:
                    return False
                if self.waves.fill(batch, queue, stop):
                    self._flush(batch, summary, sink, redo=False)
                    return True
                last = not queue and not self.pretend  # the chunk's last batch (unless another writer interferes)
                following = self._normalized_albums(list(later)) if last else []
                queue.extend(self._flush(batch, summary, sink, ahead=queue or later, albums=following))
                self._albums_stored = last
                if not queue:
                    return False

    def _normalized_albums(self, ids: Sequence[int]) -> list[Album]:
        """The albums of these items the rules change; their changes go to the
        job's record first (for its undo), as a journal entry goes before its change."""
        albums = self.planner.normalized_albums(ids)
        self.journal.record_albums({int(album.id or 0): changes for album, changes in albums.items()})
        return list(albums)

    def _put_albums_back(self) -> None:
        """An undo that went through: the album fields the job changed, put
        back where they still hold what it wrote (recorded first, so the undo
        can be undone)."""
        reversal = self.planner.reversal
        assert reversal is not None
        albums = reversal.albums_back(self.lib)
        if albums:
            self.journal.record_albums({int(album.id or 0): changes for album, changes in albums.items()})
            self.committer.store_rows(list(albums))

    # --- commit and report --------------------------------------------------------

    def _flush(self, batch: Batch, summary: Summary, sink: Sink, redo: bool = True,
               ahead: deque[int] | None = None, albums: Sequence[Album] = ()) -> list[int]:
        """Commit the batch (items + markers, and ``albums``: the next chunk's,
        normalized), put back the items another writer changed meanwhile, then
        report. Returns the ids to do again. With ``ahead``, the next batch's
        first wave is begun from those ids before the commit (``Waves.look_ahead``)."""
        self.waves.finish_pending(batch)
        if ahead:
            self._ahead = self.waves.look_ahead(ahead)
        self.executor.drain_files()  # every file of the batch reported before its commit
        batch.results = batch.known()
        sync_dirs(batch.placed)  # the names the commit records survive a power cut it survives
        conflicted = self.committer.commit(batch, albums)
        done = [touch for touch in batch.touches if touch not in conflicted]
        self._drop_backups(done)  # before their intents: a kill in between leaves them to the repair
        self.executor.committed(done)  # their old names go at the end of the run (Executor.committed)
        self.journal.forget([intent for touch in done for intent in touch.intents])
        for touch in done:
            touch.intents = []
        again = self._redo_or_fail(batch, conflicted, redo)
        self._report(batch, summary, sink)  # before the art moves: those items are recorded whatever happens next
        self.waves.art_moved = set() if self.pretend or not batch.albums else self.art.move(batch.albums)
        for directory in batch.vacated:
            util.prune_dirs(directory, self.lib.directory, clutter=self.clutter)
        if batch.vacated:
            self.executor.pruned()
        return again

    def _drop_backups(self, touches: Sequence[Touch]) -> None:
        """The commit records these items' tag writes: their backups (files.py)
        are no longer needed. The removals are synced before the journal
        forgets the writes: a backup a power cut brought back would have no
        entry left to find it by."""
        emptied = []
        for touch in touches:
            if touch.backup is not None:
                if drop_backup(touch.backup):
                    emptied.append(os.path.dirname(touch.backup))
                touch.backup = None
        sync_dirs(emptied)

    def _report(self, batch: Batch, summary: Summary, sink: Sink) -> None:
        """Count and report the batch's results once (a signal waits: counted
        but not reported, or reported twice, would be a lie), then forget the
        note that its committed items were not reported yet."""
        with signals_deferred():
            results, batch.results = batch.results, []
            self._reported.update(result.item_id for result in results)
            if results:
                sink.items([(summary.count(r), r) for r in results], summary)
            self.journal.forget(batch.unreported)
            batch.unreported = []

    def _redo_or_fail(self, batch: Batch, conflicted: list[Touch], redo: bool) -> list[int]:
        """Put the files of items another program changed mid-batch back in line
        with the library; do them again (from the new state) or report them."""
        again = []
        for touch in conflicted:
            with signals_deferred():
                problem = self.undo.put_back(touch)
            result, item_id = touch.result, touch.id
            assert result is not None
            if result.success and problem is None and redo and self._redone[item_id] < REDO_ATTEMPTS:
                self._redone[item_id] += 1
                batch.results = [r for r in batch.results if r is not result]
                again.append(item_id)
                continue
            note = "changed by another program during the run; left unmarked"
            if problem:
                note += (f"; its file could not be put back in line with the library ({problem}): "
                         "the next run settles it")
            result.success, result.dest = False, None
            result.error = f"{result.file}: {note}" if result.error is None else f"{result.error} ({note})"
        return again

    # --- an early end ----------------------------------------------------------------

    def _abort(self, exc: BaseException, summary: Summary, sink: Sink) -> None:
        """The run cannot go on: put the uncommitted batch back on disk, say so, stop."""
        batch = self._batch
        if isinstance(exc, (KeyboardInterrupt, Terminated)) and threading.current_thread() is threading.main_thread():
            if release_interrupted_transaction(self.lib):  # (the signal landed inside beets' transaction code)
                self.log.debug("the signal interrupted a library transaction; released it")
        self.executor.stop()  # first: nothing may touch a file while the batch is put back
        if not batch.committed:
            batch.results = batch.known()
        reason = why(exc, self.lib, self.settings.commit_attempts)
        summary.status = ("cancelled" if isinstance(exc, (KeyboardInterrupt, Cancelled))
                          else "failed" if isinstance(exc, Exception) else "interrupted")
        self.log.debug("the run stops: {}", reason, exc_info=True)  # the summary's error tells the user
        if self.pretend:
            summary.error = reason
            return
        worked = [touch for touch in batch.touches if touch.store or touch.intents]
        undone, problems = 0, []
        for touch in reversed(batch.touches):  # newest first
            if not touch.intents:
                continue  # committed already, or nothing happened to its file
            problem = self.undo.put_back(touch)
            if problem is None:
                undone += 1
            else:
                problems.append(f"{readable(touch.item.path)}: {problem}")
        try:  # the old names of what earlier batches committed
            self.executor.release_all()
        except Exception as problem:  # their intents stay: the next run's repair removes them
            self.log.debug("could not remove the old names of moved files: {}", problem)
        parts = [reason]
        if worked and not batch.committed:
            parts.append(f"the last batch of {len(worked)} item{'s' if len(worked) != 1 else ''} was undone on disk "
                         f"({undone} file{'s' if undone != 1 else ''} put back); nothing of it was recorded")
        if problems:
            parts.append(f"{len(problems)} file{'s' if len(problems) != 1 else ''} could not be put back and "
                         f"stay in the journal for the next run to settle: " + "; ".join(problems[:3]))
        summary.error = "; ".join(parts)
        self._report_last_batch(batch, exc, reason, summary, sink)

    def _report_last_batch(self, batch: Batch, exc: BaseException, reason: str, summary: Summary,
                           sink: Sink) -> None:
        """Report what a stopped run had not: a committed batch as it was
        recorded (a signal right after its COMMIT), an undone one as failed
        "not recorded" (unless Ctrl-C: its items simply stay for the next run)."""
        if batch.committed:
            for touch in batch.touches:
                if touch.id in batch.left_out and touch.result is not None:
                    touch.result.success, touch.result.dest = False, None
                    touch.result.error = f"{touch.file}: changed by another program during the run; left unmarked"
        elif isinstance(exc, Exception):
            for result in batch.results:
                if result.success and not result.skipped:
                    result.success, result.dest, result.error = False, None, f"{result.file}: not recorded: {reason}"
        else:
            batch.results = []
        try:
            self._report(batch, summary, sink)
        except Exception:  # the sink may be what failed (the job store)
            self.log.debug("could not report the stopped run's last batch", exc_info=True)
