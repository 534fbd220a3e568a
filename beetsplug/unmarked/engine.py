"""The engine: one operation over a list of item ids, for every caller.

The CLI, the web jobs and the import hook all hand ids to ``Engine.run`` and
differ only in the ``Sink`` that shows what happens. Per item the engine runs
the operation's steps through beets (normalize the tags and write the changed
ones - beets' ``write``/``after_write`` events around an untearable write of
those fields, or the whole ``Item.write`` when a plugin edits tags on
``write``; ``Item.destination`` and beets' move with its events), then commits
items in batches: one library transaction holds the item changes and their
markers together, bounded by count and by time so other readers are never
locked out for long. A batch's events are sent after its commit, so "success"
always means the marker is in the library. Every move and tag write is
journaled first (see journal.py).

A batch is worked in waves of a few dozen items: their rows are read in one
query, their tag writes journaled in one transaction and done in order, then
their moves journaled in one transaction and done in order. Per item that is
the order beets would follow (tags, then the move); per wave it saves the
per-item round trips to both databases, which were most of a run's time.
When the helper process computes a rename's destinations, the next batch's
first wave is read while a batch commits, and its destinations asked of the
helper then, so the second core works through the commit (no file of that
wave is touched, nor anything journaled, before the commit).

Files and library agree at every exit. Each item is read from the library
just before its file work; the commit compares its row, and its album's row
(path formats read album fields), with what was read and leaves out items
another program changed meanwhile: their files are put back in line with the
library and they are done again from the new state. Until a committed batch
is reported, the journal names the items it marked and their marker time, so
a run resuming the job after a stop counts exactly those as its own.
A run that cannot commit (library locked past the retries or failing, claim
lost, job store unusable, Ctrl-C) puts its uncommitted batch back on disk -
files moved back, tags rewritten from the library - before it stops, and
says so. A journal intent is forgotten only once what it describes is
committed or undone; anything that cannot be undone stays for the next run.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import threading
import time
from collections import Counter, deque
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import beets
from beets import plugins, util
from beets.library import Item
from beets.util import FilesystemError

from . import CONFIG_DEFAULTS
from . import helper as helpers
from .beets_compat import (
    FileOperationError,
    dirty_flags,
    listens,
    media_fields,
    model_from_row,
    path_format_chooser,
    plugin_getters_fixed,
    restore_dirty_flags,
    set_field,
    store_many,
)
from .errors import Cancelled, ClaimLost, RunAborted, Terminated
from .files import (
    put_back_fields,
    remove_partial_copies,
    remove_stale_temps,
    unique_destination,
    where_after_failed_move,
)
from .journal import ALBUM, ITEM, UNREPORTED, tags_entry
from .operations import RENAMED
from .results import ItemResult, Summary, readable
from .states import COMMITTED, CONFLICTED, DONE, FAILED, HANDED, UNDONE, UNTRIED, Tracker
from .transaction import LibraryLockedError, atomic, rolled_back, wait_until_writable
from .workers import FileDone, FileTask, InProcess, Reply, Worker

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from beets.dbcore.db import Transaction
    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .claim import LibraryLock
    from .journal import Journal
    from .normalize import Rules
    from .operations import Operation

T = TypeVar("T")

# What can go wrong with one item without stopping the run.
ITEM_ERRORS = (FileOperationError, FilesystemError, OSError)


class ItemError(Exception):
    """An item cannot be done; the message names the file and the reason."""


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


# An item as stored: its column names, their values and its flexible attributes.
# Compared whole at commit time; tuples, because a dict of ~100 columns costs
# ~40 us an item to build from an SQLite row and ~10 to compare.
Row = tuple[tuple[str, ...], tuple[Any, ...], dict[str, Any]]
MARK_TOLERANCE = 0.001  # seconds: a marker read back is "the same time" as the one a commit wrote
REDO_ATTEMPTS = 2  # an item another writer changed mid-batch is done again from its new state, this often
# A batch is worked in waves: each wave's rows are read in one query and its
# intents journaled in one transaction per kind, then its files are done in
# order. Waves are sized to end the batch near ``batch_seconds``.
FIRST_WAVE, MAX_WAVE = 8, 64
# A rename whose destinations the helper computes takes larger waves: each
# wave costs a round trip to the helper and a journal transaction, and its
# files are moved while the next wave is read (with 64, the default batch of
# 200 was 64 + 64 + 64 + 8: ~8 % slower than 100 + 100 at 5 000 items).
# Tag writes (process, normalize) keep smaller waves: the batch's last one is
# waited for at its commit.
MAX_SHARED_WAVE = 100
# The helper process (helper.py) takes a run's tag writes and moves, or a
# share of its destinations, when it has at least this many items and no
# plugin listens to the events of that work (they would run in the helper).
HELPER_MIN_ITEMS = 4
HANDED_EVENTS = ("write", "after_write", "before_item_moved", "item_moved")


@dataclass(eq=False)
class Touch(Tracker):
    """One item a batch works on: how it was read and what was done to its file
    (``state``: where it is in its life, see states.py).

    ``intents`` are its journal entries still open: forgotten only once the
    batch has committed, or once the file is put back to match the library.
    """

    id: int
    item: Item  # as changed: tags, path, markers
    row: Row  # its library row as read (the item has copies); another row at commit: another writer changed it
    src: bytes  # where the file was
    file: str = ""  # ``src`` for messages
    changes: dict[str, list[Any]] = field(default_factory=dict)  # by the rules: field -> [old, new]
    before: Item | None = None  # --pretend: as read, for the diff
    dest: bytes | None = None  # where a move was tried to (it may have happened even if it raised)
    result: ItemResult | None = None  # set once the item is done or has failed
    markers: tuple[str, ...] = ()
    store: bool = False  # the commit stores the item (with ``markers``)
    wrote: bool = False  # the file may hold tags the library does not
    moved: bool = False  # the file is at ``item.path``, no longer at ``src``
    intents: list[int] = field(default_factory=list)


@dataclass
class Handed:
    """An item whose file work the helper has: its intents, to settle by the report."""

    touch: Touch
    batch: Batch
    tags: dict[str, Any] | None
    dest: bytes | None
    tags_intent: int | None = None
    move_intent: int | None = None


@dataclass
class Wave:
    """Items read together, whose file work is done together."""

    touches: list[Touch]  # the ones with work left
    asked: int = 0  # the first this many: their destinations were asked of the helper
    slot: int = 0  # the helper's request for them (see ``Helper.steal``)
    early: bool = False  # begun while the batch before it committed (``_look_ahead``)


@dataclass
class Batch:
    """Work done since the last commit."""

    started: float = field(default_factory=time.monotonic)
    outcomes: list[Touch | ItemResult] = field(default_factory=list)  # in id order; a touch's result comes later
    results: list[ItemResult] = field(default_factory=list)  # what is reported, once every outcome is known
    touches: list[Touch] = field(default_factory=list)
    taken: set[bytes] = field(default_factory=set)  # destinations promised in this batch
    vacated: set[bytes] = field(default_factory=set)  # directories items left
    albums: set[int] = field(default_factory=set)  # albums whose items moved (art follows)
    pending: Wave | None = None  # begun, to finish before the commit
    versions: set[int] = field(default_factory=set)  # the library's data_version at each read of the batch's rows
    album_rows: dict[int, Row] = field(default_factory=dict)  # its items' albums, as first read (path formats use them)
    committed: bool = False  # set with the COMMIT (see _in_transaction)
    left_out: set[int] = field(default_factory=set)  # by that commit: items another program changed
    unreported: list[int] = field(default_factory=list)  # journal entries: marked by the commit, not yet reported


class Engine:
    """Runs one operation; construct per run.

    ``guard`` (fencing) is called before every file operation and every
    commit; it raises ``ClaimLost`` once this process no longer owns the
    library, and the run then does no more forward work: it puts its
    uncommitted batch back on disk and stops, failed.
    """

    def __init__(self, lib: Library, op: Operation, *, rules: Rules, settings: Settings, log: BeetsLogger,
                 journal: Journal | None = None, force: bool = False, pretend: bool = False,
                 guard: Callable[[], None] | None = None, claim: LibraryLock | None = None) -> None:
        if not pretend and journal is None:
            raise ValueError("a real run needs the journal")
        self.lib, self.op, self.rules, self.settings, self.log = lib, op, rules, settings, log
        self._markers = op.markers
        self.journal, self.force, self.pretend = journal, force, pretend
        # Fencing: raises ClaimLost once this process no longer owns the library.
        self.guard: Callable[[], None] = guard or (lambda: None)
        self.clutter = beets.config["clutter"].as_str_seq()
        self._batch = Batch()
        self._redone: Counter[int] = Counter()
        self._chooser: Callable[[Item], bytes] | None = None  # path formats, parsed once (in the run)
        self._made: set[bytes] = set()  # directories this run has made or found (until the next prune)
        self._per_item: float | None = None  # seconds an item takes, measured: sizes the waves
        # Only the changed fields are written, unless a plugin edits the tags
        # beets passes with its ``write`` event (zero, scrub, ...): then beets'
        # whole ``Item.write``, as before.
        self._whole_writes = listens("write")
        self._media_fields = media_fields()
        self._id3v23 = beets.config["id3v23"].get(bool)
        # The claim (its lock is shared with the helper process, which checks
        # it like ``guard`` before each file); without one, no helper.
        self.claim = claim
        self._helper: helpers.Helper | None = None  # the helper process, if the run has one (its worker)
        self._worker: Worker | None = None  # who does the file work: the helper, or this process
        self._handed: dict[int, Handed] = {}  # by the key of its helper task
        self._keys = itertools.count()
        self._found: deque[list[Any]] = deque()  # the helper's destinations, not yet taken by their wave
        self._unreported: dict[int, float] = {}  # resuming: items the stopped run marked (and when), unreported
        self._ahead: Batch | None = None  # the next batch, its first wave begun while this one commits
        self._art_moved: set[int] = set()  # albums whose art the last commit moved (their ``artpath`` changed)
        self._stop: Callable[[], bool] = lambda: False  # the run's: asked while a wait on the helper is long
        self._reported: Counter[int] = Counter()  # item id -> outcomes reported (exactly one each, see _account)

    # --- the run ------------------------------------------------------------

    def run(self, ids: Sequence[int], sink: Sink, stop: Callable[[], bool] = lambda: False, *,
            resume: Summary | None = None, unreported: dict[int, float] | None = None) -> Summary:
        """Run over ``ids``; the summary says how it ended.

        With ``resume``, continue that run: its counters go on (``total`` stays
        as given), ``ids`` are the ones it had not reached, and no ``start`` is
        sent (the job's stream has it already). ``unreported`` holds what the
        stopped run's journal said it was committing: items and the exact time
        their markers were given. An item still marked with that time was done
        by that run (committed, never reported): it counts as succeeded, not as
        skipped; marked otherwise, by someone else.

        Every exit leaves files and library in agreement: an error that ends
        the run (library locked or failing, claim lost, job store unreadable)
        and Ctrl-C put the uncommitted batch back on disk first; the summary's
        ``error`` says what happened to it. Ctrl-C (and any other
        ``BaseException``) is re-raised after ``done``.
        """
        self._stop = stop
        if resume is None:
            summary = Summary(total=len(ids))
            sink.start(len(ids))
        else:
            summary = resume
            summary.error = None
            self._unreported = unreported or {}
        # Paths expand in any thread; plugins' field getters are worked out once.
        with self.lib.music_dir_context(), plugin_getters_fixed():
            try:
                summary.status = "completed"
                self._start_worker(len(ids))
                chunks = [deque(chunk) for chunk in _chunks(ids, self.settings.batch_size)]
                for number, chunk in enumerate(chunks):
                    later = chunks[number + 1] if number + 1 < len(chunks) else deque()
                    if self._run_chunk(chunk, later, summary, sink, stop):
                        summary.status = "cancelled"
                        break
                else:
                    # begun while the last batch committed: its items are the last
                    if self._ahead is not None and self._run_chunk(deque(), deque(), summary, sink, stop):
                        summary.status = "cancelled"
                self._account(ids, summary)
            except BaseException as exc:
                with _signals_deferred():  # a second Ctrl-C must not cut the undo short
                    self._abort(exc, summary, sink)
                    sink.done(summary)
                if isinstance(exc, Exception):
                    return summary
                raise
            finally:
                self._end_worker()
        sink.done(summary)
        return summary

    def _account(self, ids: Sequence[int], summary: Summary) -> None:
        """Every selected item has exactly one outcome: a run that cannot say
        what happened to an item is not "completed" - it fails, naming them.
        A cancelled run leaves the items it did not reach unmarked (the
        summary's ``current`` stops short of ``total``)."""
        missing = [item_id for item_id in ids if self._reported[item_id] == 0]
        twice = sorted(item_id for item_id, count in self._reported.items() if count > 1)
        strays = sorted(set(self._reported) - set(ids))
        if summary.status == "cancelled" or not (missing or twice or strays):
            return
        problems = []
        if missing:
            problems.append(f"{len(missing)} of the {len(ids)} selected items got no outcome "
                            f"(ids {_few(missing)}); they stay unmarked")
        if twice:
            problems.append(f"{len(twice)} items were reported twice (ids {_few(twice)})")
        if strays:
            problems.append(f"{len(strays)} items were reported that were not selected (ids {_few(strays)})")
        summary.status = "failed"
        summary.error = "the run could not account for every item: " + "; ".join(problems)
        self.log.error("{}", summary.error)

    # --- the helper process ---------------------------------------------------

    def _start_worker(self, count: int) -> None:
        """The run's worker: the helper process if this run can use one (see
        helper.py), else this process. A pretend run hands nothing out."""
        if self.pretend:
            return
        if (count < HELPER_MIN_ITEMS or not helpers.available(self.claim)
                or any(listens(event) for event in HANDED_EVENTS)):
            self._worker = InProcess(self.guard, self._id3v23)
            return
        assert self.claim is not None
        self.guard()
        self._helper = helpers.Helper(self.lib, self.claim, self._id3v23, shield=_signals_deferred)
        self._worker = self._helper
        self.log.debug("helper process {} takes this run's {}", self._helper.pid,
                       "tag writes and moves" if self.op.normalize else "file work and a share of destinations")

    def _end_worker(self) -> None:
        worker, self._worker, self._helper = self._worker, None, None
        if worker is not None:
            worker.close()

    def _receive(self) -> Reply:
        assert self._worker is not None
        return self._worker.receive(cancelled=self._stop)

    def _drain(self, open_at_most: int = 0) -> None:
        """Settle the helper's reports until at most ``open_at_most`` requests are open."""
        while self._worker is not None and self._worker.busy > open_at_most:
            self._settle(*self._receive())

    def _drain_files(self) -> None:
        """Settle the helper's reports until no file work is out (a request
        for destinations sent after the last one may stay open)."""
        while self._worker is not None and self._worker.awaits("files"):
            self._settle(*self._receive())

    def _settle(self, kind: str, reports: list[Any], stopping: bool = False) -> None:
        """Apply the helper's reports; a lost claim ends the run after all of them are applied."""
        if kind == "destinations":  # for the wave that asked: kept until it finishes
            self._found.append(reports)
            return
        lost = None
        for report in reports:
            lost = self._settle_files(report) or lost
        if lost is not None and not stopping:
            raise ClaimLost(lost)

    def _stop_worker(self) -> None:
        """The run is ending early: the worker stops after the item in hand and
        reports; the undo then knows what was done. Unanswered (a helper killed,
        a task cut by Ctrl-C): the handed-out items count as maybe written,
        maybe moved, and the undo finds out from the files."""
        worker, self._worker, self._helper = self._worker, None, None
        if worker is None:
            return
        replies = worker.stop()
        for kind, reports in replies or []:
            self._settle(kind, reports, stopping=True)
        for handed in self._handed.values():  # never answered: the undo finds out
            self.log.debug("no report for the file work of item {}", handed.touch.id)
        self._handed.clear()

    def _run_chunk(self, queue: deque[int], later: deque[int], summary: Summary, sink: Sink,
                   stop: Callable[[], bool]) -> bool:
        """Process one chunk of ids (``queue``, emptied as it goes); return
        True if asked to stop. ``later`` is the next chunk's: a batch's commit
        may begin its first wave (see ``_look_ahead``)."""
        albums = self._normalized_albums(list(queue))
        # Path formats read album-level fields from the album row, so changed
        # albums are stored before any item moves. --pretend stores them in a
        # transaction it rolls back at the end of the chunk (held only then).
        scope: AbstractContextManager[Any] = rolled_back(self.lib) if self.pretend and albums else nullcontext()
        with scope:
            if albums:
                self._store(albums, self._store_album)
            while True:
                batch, self._ahead = self._ahead or Batch(), None  # begun while the last batch committed
                self._batch = batch
                if not queue and not batch.outcomes:
                    break
                early = batch.pending is not None and batch.pending.early
                while queue or early:
                    early = False
                    if stop():
                        if batch.pending is not None and batch.pending.early:  # no file of it touched yet
                            self._drop_early(batch)
                        self._flush(batch, summary, sink, redo=False)
                        return True
                    if not queue:
                        break
                    started = time.monotonic()
                    ids_now = [queue.popleft() for _ in range(min(self._wave_size(batch), len(queue)))]
                    wave = self._begin_wave(ids_now, batch)
                    self._finish_pending(batch)  # the wave before, whose destinations the helper has had meanwhile
                    if wave.asked:
                        batch.pending = wave
                    else:
                        self._finish_wave(wave, batch)
                    # the helper stays at most two requests behind; this process's reports are settled at once
                    self._drain(open_at_most=2 if self._helper is not None else 0)
                    spent = (time.monotonic() - started) / len(ids_now)
                    self._per_item = spent if self._per_item is None else 0.7 * self._per_item + 0.3 * spent
                    if time.monotonic() - batch.started >= self.settings.batch_seconds:
                        break
                queue.extend(self._flush(batch, summary, sink, ahead=queue or later))  # items another writer changed
                if not queue:
                    break
        return False

    def _look_ahead(self, source: deque[int]) -> None:
        """Begin the next batch's first wave while this one commits, its
        destinations all asked of the helper (rename): the helper computes them
        while this process waits for the library's disk, sends events and
        prunes directories. Only rows are read and destinations computed; no
        file is touched and nothing journaled before the commit, so an abort
        has nothing more to undo. The rows are checked at the next batch's
        commit like any other (this batch's commit changes no other item).
        The one album field this run changes - ``artpath``, when art follows
        its items after the commit - is handled in ``_destinations_found``."""
        if self._helper is None or self.op.normalize or not source:
            return
        batch = Batch()
        ids = [source.popleft() for _ in range(min(self._wave_size(batch), len(source)))]
        wave = self._begin_wave(ids, batch)
        wave.early = True
        if wave.touches:
            batch.pending = wave
        self._ahead = batch

    def _drop_early(self, batch: Batch) -> None:
        """Forget a wave begun ahead of its batch (the run stops before it):
        its items are left as not reached; the helper's answer is read and dropped."""
        wave, batch.pending = batch.pending, None
        assert wave is not None
        if wave.asked:
            while not self._found:
                self._settle(*self._receive())
            self._found.popleft()
        batch.outcomes, batch.touches = [], []

    def _wave_size(self, batch: Batch) -> int:
        """How many items the next wave takes: as many as fit in what is left
        of the batch's time, by the time items have taken so far."""
        left = self.settings.batch_seconds - (time.monotonic() - batch.started)
        if left <= 0:
            return 1
        if self._per_item is None:
            return FIRST_WAVE
        most = MAX_SHARED_WAVE if self._helper is not None and not self.op.normalize else MAX_WAVE
        return max(1, int(min(most, left / max(self._per_item, 1e-9))))  # (no time bound: left is inf)

    # --- a wave of items ---------------------------------------------------------

    def _begin_wave(self, ids: Sequence[int], batch: Batch) -> Wave:
        """Start a few items, read from the library just now (not when their
        chunk began): read them in one query and normalize them. With a
        helper, hand their file work out at once (process, normalize: the tag
        writes are its load; destinations are computed here), or ask it for
        their destinations (rename: the wave is finished on the next turn,
        while the helper works on these; what it has not begun by then is
        computed here)."""
        with self.lib.transaction() as tx:
            batch.versions.add(_data_version(tx))  # before the rows: a commit in between shows as a change
            rows = _raw_rows(tx, ids)
            if not self.pretend:
                albums = {album for row in rows.values()
                          if (album := _album_id(row)) is not None and album not in batch.album_rows}
                batch.album_rows.update(_raw_rows(tx, sorted(albums), ALBUM_TABLES))
        outcomes = [self._begin(item_id, rows.get(item_id), batch) for item_id in ids]
        batch.outcomes += outcomes
        live = [touch for touch in outcomes if isinstance(touch, Touch) and touch.result is None]
        wave = Wave(live)
        if self._helper is not None and not self.op.normalize:  # rename: destinations asked, finished next turn
            wave.asked = len(live)
            if wave.asked:
                wave.slot = self._helper.send_destinations(
                    [(t.id, t.row, {key: new for key, (_, new) in t.changes.items()}) for t in live])
        elif self._helper is not None:  # process, normalize: tag writes (and moves) are the helper's load
            self._hand_out(live, batch, {})
            wave.touches = []
        return wave

    def _finish_wave(self, wave: Wave, batch: Batch) -> None:
        """Hand the wave's file work to the worker: every tag write and move
        journaled for the whole wave at once before its first file changes
        (``_hand_out``). An item's trouble is its own; anything that ends the
        run (claim lost, journal or library unusable) propagates, and the
        batch's touches say what to undo."""
        if self.pretend:
            self._pretend(wave.touches, batch)
        else:
            self._hand_out(wave.touches, batch, self._destinations_found(wave) if wave.asked else {})

    def _pretend(self, touches: Sequence[Touch], batch: Batch) -> None:
        """--pretend: the item as the run would leave it, no file touched."""
        for touch in touches:
            try:
                dest = self._place(touch, batch) if self.op.rename else None
            except (RunAborted, sqlite3.Error):
                raise
            except Exception as exc:
                self._fail(touch, exc)
                continue
            if dest is not None:
                set_field(touch.item, "path", dest)
            self._succeed(touch)

    def _finish_pending(self, batch: Batch) -> None:
        wave, batch.pending = batch.pending, None
        if wave is not None:
            self._finish_wave(wave, batch)

    def _begin(self, item_id: int, raw: Row | None, batch: Batch) -> Touch | ItemResult:
        """An item as read: skipped, or a touch (failed already if its file is gone)."""
        if raw is None:
            return ItemResult(item_id, None, skipped=True, error="removed from the library during the run")
        item = _model(self.lib, raw)
        path = item.path
        file = readable(path)
        if item_id in self._unreported and _marked_at(raw[2], self._markers, self._unreported[item_id]):
            return ItemResult(item_id, file, file)  # done by the run this one resumes: recorded, never reported
        if not self.force and all(marker in raw[2] for marker in self._markers):  # as ``unmarked:`` selects
            return ItemResult(item_id, file, file, skipped=True, error="already done by another run")
        touch = Touch(item_id, item, raw, path, file, before=item.copy() if self.pretend else None)
        if not self.pretend:
            batch.touches.append(touch)
        try:
            if not os.path.exists(util.syspath(path)):
                raise ItemError(f"file not found: {file}")
            if self.op.normalize:
                touch.changes = self._normalize(item, _filled(raw))
        except (RunAborted, sqlite3.Error):
            raise
        except Exception as exc:
            self._fail(touch, exc)
        return touch

    def _fail(self, touch: Touch, exc: Exception) -> None:
        """One item's trouble never stops the run: it is reported, unmarked."""
        touch.to(FAILED)
        touch.store = touch.wrote or touch.moved  # the file changed: record what it holds, no marker
        touch.result = ItemResult(touch.id, touch.file, success=False,
                                  error=readable(self._describe(exc, touch.file)))

    def _succeed(self, touch: Touch) -> None:
        touch.to(DONE)
        touch.store, touch.markers = not self.pretend, self._markers
        item = touch.item
        touch.result = ItemResult(touch.id, touch.file, readable(item.path), changes=touch.changes,
                                  before=touch.before, after=item if self.pretend else None)

    def _read(self, item_id: int) -> tuple[Row, Item] | None:
        """The item as the library has it now, and its raw row for the conflict check.

        Both come from the same rows, so a commit in between can only show up
        as a conflict (done again), never hide one.
        """
        with self.lib.transaction() as tx:
            raw = _raw_rows(tx, [item_id]).get(item_id)
        if raw is None:
            return None
        return raw, _model(self.lib, raw)

    def _describe(self, exc: Exception, file: str) -> str:
        """beets' file errors already name the path; anything else gets it added."""
        if isinstance(exc, (*ITEM_ERRORS, ItemError)):
            return str(exc)
        self.log.debug("unexpected error on {}", file, exc_info=True)
        return f"{file}: {type(exc).__name__}: {exc}"

    def _normalize(self, model: Item | Album, present: set[str] | None = None) -> dict[str, list[Any]]:
        """Apply the rules to the fields the model has (``present``: those, or
        fewer that include every non-empty one - the rules leave empty ones be)."""
        if not self.op.normalize:
            return {}
        if present is None:
            present = set(model.keys(with_album=False)) if isinstance(model, Item) else set(model.keys())
        return self.rules.apply(model, present)

    def _intend(self, kind: str, entity: int, src: bytes, dst: bytes) -> int:
        assert self.journal is not None
        return self.journal.intend(kind, entity, src, dst)

    def _forget(self, intents: Sequence[int]) -> None:
        if intents and self.journal is not None:
            self.journal.forget(intents)

    def _intend_many(self, entries: Sequence[tuple[str, int, bytes, bytes]]) -> list[int]:
        if not entries:
            return []
        assert self.journal is not None
        return self.journal.intend_many(entries)

    def _media_changes(self, changes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """The changes that reach the file (fields mediafile writes): what a tag write's intent records."""
        return {key: change for key, change in changes.items() if key in self._media_fields}

    def _tags(self, item: Item, changes: dict[str, list[Any]]) -> dict[str, Any] | None:
        """What the item's tag write writes: the changed fields ``Item.write``
        writes, with their new values (None: no write). When a plugin edits
        tags on beets' ``write`` event (zero, scrub, ...), every field, as
        beets' whole ``Item.write`` gives it: the plugin may edit any of them."""
        if not changes:
            return None
        if self._whole_writes:
            return {key: value for key, value in dict(item).items() if key in self._media_fields}
        return {key: item[key] for key in changes if key in self._media_fields} or None

    def _normalized_albums(self, ids: Sequence[int]) -> list[Album]:
        """The albums of these items whose fields the rules changed (in memory)."""
        if not self.op.normalize:
            return []
        with self.lib.transaction() as tx:
            album_ids = sorted({row[0] for part in _parts(ids) for row in tx.query(
                f"SELECT DISTINCT album_id FROM items WHERE album_id IS NOT NULL AND id IN ({_marks(part)})", part)})
        return [a for a in map(self.lib.get_album, album_ids) if a is not None and self._normalize(a)]

    def _store_album(self, album: Album) -> None:
        """Store a normalized album; its items whose destination this changes
        lose ``renamed`` in the same commit (see ``_keep_renamed_honest``)."""
        album.store(inherit=False)
        if self.pretend:
            return
        for item in album.items():
            if self._keep_renamed_honest(item):
                item.store()

    def _keep_renamed_honest(self, item: Item) -> bool:
        """``renamed`` promises the file is at its destination. Normalizing can
        change the fields the path format uses; an item it leaves in place
        whose destination changed loses ``renamed`` (cleared, in the same
        commit, not moved: normalize stays a tags-only operation, and the
        next rename-unmarked moves it). Returns whether it was cleared."""
        if item.get(RENAMED, with_album=False) is None or util.samefile(self._destination(item), item.path):
            return False
        del item[RENAMED]
        return True

    def _destination(self, item: Item) -> bytes:
        """``item.destination()``, with the path formats' queries parsed once."""
        if self._chooser is None:
            self._chooser = path_format_chooser(self.lib)
        return self._chooser(item)

    def _place(self, touch: Touch, batch: Batch, found: bytes | None = None) -> bytes | None:
        """Where the item's file goes (a name no other file has or is promised),
        or None if it is there already."""
        dest = found if found is not None else self._destination(touch.item)
        # beets' ``samefile(dest, src)`` (the file, not moved yet, is at
        # ``src``), then ``unique_path``; both only look further when ``dest``
        # exists, so one stat answers the usual case: free, and not the file.
        if dest == touch.src:
            return None
        if os.path.exists(util.syspath(dest)):
            if util.samefile(dest, touch.src):
                return None
            dest = unique_destination(dest, batch.taken)
        elif dest in batch.taken:
            dest = unique_destination(dest, batch.taken)
        batch.taken.add(dest)
        return dest

    def _destinations_found(self, wave: Wave) -> dict[int, bytes | ItemError]:
        """A rename wave's destinations, asked of the helper when the wave
        began: those it has not begun yet are computed here, from the last one
        back, rather than waited for; the rest come with its answer."""
        assert self._helper is not None
        found: dict[int, bytes | ItemError] = {}
        while (index := self._helper.steal(wave.slot)) is not None:
            self._find(wave.touches[index], found)
        while not self._found:  # replies come in order: any files reports before it are settled
            self._settle(*self._receive())
        reports = self._found.popleft()
        files = {touch.id: touch.file for touch in wave.touches}
        for report in reports:
            if report.key in found:  # both took it (a race the counters allow): this process's answer stands
                continue
            found[report.key] = (report.dest if report.error is None
                                 else ItemError(readable(report.error.replace("{file}", files[report.key]))))
        if wave.early and self._art_moved:  # asked before the commit that moved their album's art: ask again
            for touch in wave.touches:
                if touch.item.album_id in self._art_moved:
                    self._find(touch, found)
        return found

    def _find(self, touch: Touch, found: dict[int, bytes | ItemError]) -> None:
        try:
            found[touch.id] = self._destination(touch.item)
        except (RunAborted, sqlite3.Error):
            raise
        except Exception as exc:
            found[touch.id] = ItemError(readable(self._describe(exc, touch.file)))

    def _hand_out(self, touches: Sequence[Touch], batch: Batch, found: dict[int, bytes | ItemError]) -> None:
        """Give the wave's file work to the worker: destinations (``found``:
        those the helper computed) and unique names here, every tag write and
        move journaled (one transaction), beets' ``write`` and
        ``before_item_moved`` events sent, then the tasks; the reports settle
        each item (``_settle_files``), with ``after_write`` and ``item_moved``."""
        assert self._worker is not None
        plans: list[Handed] = []
        for touch in touches:
            tags = self._tags(touch.item, touch.changes)
            try:
                known = found.get(touch.id)
                if isinstance(known, ItemError):
                    raise known
                dest = self._place(touch, batch, known) if self.op.rename else None
                if dest is not None:
                    self._make_dirs(dest)
            except (RunAborted, sqlite3.Error):
                raise
            except Exception as exc:
                self._fail(touch, exc)
                continue
            if not tags and dest is None:
                self._succeed(touch)  # nothing to do to its file
                continue
            plans.append(Handed(touch, batch, tags or None, dest))
        if not plans:
            return
        if self._helper is not None:  # (in this process, the worker asks before each file)
            self.guard()
        # The files are where they were read (``src`` is ``item.path`` until a move is reported).
        entries = [entry for h in plans for entry in (
            [tags_entry(h.touch.id, h.touch.src, self._media_changes(h.touch.changes))] if h.tags else []) + (
            [(ITEM, h.touch.id, h.touch.src, h.dest)] if h.dest is not None else [])]
        intents = iter(self._intend_many(entries))
        tasks = []
        for handed in plans:
            touch, item = handed.touch, handed.touch.item
            if handed.tags:
                handed.tags_intent = next(intents)
                touch.intents.append(handed.tags_intent)
                plugins.send("write", item=item, path=touch.src, tags=handed.tags)
                touch.wrote = True  # maybe, until the report says
            if handed.dest is not None:
                handed.move_intent = next(intents)
                touch.intents.append(handed.move_intent)
                touch.dest = handed.dest  # maybe moved, until the report says
                plugins.send("before_item_moved", item=item, source=touch.src, destination=handed.dest)
            touch.to(HANDED)
            key = next(self._keys)
            self._handed[key] = handed
            tasks.append(FileTask(key, touch.src, handed.tags, handed.dest))
        self._worker.send_files(tasks)

    def _settle_files(self, done: FileDone) -> str | None:
        """An item's file work as the worker reports it: finish the item, fail
        it, or (stopping) record what was done. Returns a lost claim's message."""
        handed = self._handed.pop(done.key)
        touch, item = handed.touch, handed.touch.item
        if done.skipped or done.lost:  # not tried: the file is as it was
            touch.to(UNTRIED)
            touch.wrote, touch.dest = False, None
            return done.lost
        if handed.tags:
            if done.write_error is not None:  # the file as it was; not moved either
                touch.wrote, touch.dest = False, None
                self._forget(touch.intents)
                touch.intents = []
                self._fail(touch, ItemError(done.write_error))
                return None
            if done.mtime is not None:
                set_field(item, "mtime", done.mtime)
            plugins.send("after_write", item=item, path=touch.src)
        if handed.dest is not None:
            if done.where == "dst":
                set_field(item, "path", handed.dest)
                touch.moved = True
                self._vacate(handed.batch, item, touch.src)
                plugins.send("item_moved", item=item, source=touch.src, destination=handed.dest)
            elif done.where == "src":
                self._forget([handed.move_intent])  # type: ignore[list-item]
                touch.intents.remove(handed.move_intent)  # type: ignore[arg-type]
                touch.dest = None
            else:  # unsure: left in the journal for the next run's repair
                touch.intents.remove(handed.move_intent)  # type: ignore[arg-type]
            if done.move_error is not None:
                self._fail(touch, ItemError(done.move_error))
                return None
        self._succeed(touch)
        return None

    def _make_dirs(self, dest: bytes) -> None:
        directory = os.path.dirname(dest)
        if directory not in self._made:
            if not os.path.isdir(util.syspath(directory)):  # (there, so are its parents: nothing to make)
                util.mkdirall(dest)
            self._made.add(directory)

    @staticmethod
    def _vacate(batch: Batch, item: Item, old: bytes) -> None:
        batch.vacated.add(os.path.dirname(old))
        if item.album_id:
            batch.albums.add(item.album_id)

    @staticmethod
    def _move(item: Item, dest: bytes) -> None:
        """``Item.move_file`` to exactly ``dest`` (a file already there is an
        error, not a renamed destination): the same plugin events, beets'
        ``util.move`` (a rename, or a copy and delete across filesystems)."""
        source = item.path
        plugins.send("before_item_moved", item=item, source=source, destination=dest)
        util.move(source, dest)
        plugins.send("item_moved", item=item, source=source, destination=dest)
        set_field(item, "path", dest)

    def _after_failed_move(self, src: bytes, dst: bytes, exc: BaseException | None = None) -> str | None:
        """Where the file is after a move from ``src`` to ``dst`` raised (or
        was interrupted): ``"src"`` or ``"dst"``, with no partial copy left
        and never both; ``None`` if that could not be made so."""
        try:
            return where_after_failed_move(src, dst, exc)
        except OSError as problem:
            self.log.warning("could not tell where {} went after an interrupted move: {}",
                             util.displayable_path(src), problem)
            return None

    # --- commits --------------------------------------------------------------

    def _flush(self, batch: Batch, summary: Summary, sink: Sink, redo: bool = True,
               ahead: deque[int] | None = None) -> list[int]:
        """Commit the batch (items + markers), put back the items another
        writer changed meanwhile, then report. Returns the ids to do again.
        With ``ahead``, the next batch's first wave is begun from those ids
        before the commit (``_look_ahead``)."""
        self._finish_pending(batch)
        if ahead:
            self._look_ahead(ahead)
        self._drain_files()  # every file of the batch reported before its commit
        batch.results = _known(batch.outcomes)
        conflicted = self._commit(batch)
        done = [touch for touch in batch.touches if touch not in conflicted]
        self._forget([intent for touch in done for intent in touch.intents])
        for touch in done:
            touch.intents = []
        again = self._settle_conflicts(batch, conflicted, redo)
        self._report(batch, summary, sink)  # before the art moves: those items are recorded whatever happens next
        self._art_moved = set()
        self._move_art(batch.albums)
        for directory in batch.vacated:
            util.prune_dirs(directory, self.lib.directory, clutter=self.clutter)
        if batch.vacated:
            self._made.clear()  # a pruned directory may have been one of them
        return again

    def _report(self, batch: Batch, summary: Summary, sink: Sink) -> None:
        """Count and report the batch's results once (a signal waits: counted
        but not reported, or reported twice, would be a lie), then forget the
        note that its committed items were not reported yet."""
        with _signals_deferred():
            results, batch.results = batch.results, []
            self._reported.update(result.item_id for result in results)
            if results:
                sink.items([(summary.count(r), r) for r in results], summary)
            self._forget(batch.unreported)
            batch.unreported = []

    def _commit(self, batch: Batch) -> list[Touch]:
        """Store the batch's items and markers in one transaction. An item whose
        library row changed since it was read (another program committed a
        change meanwhile) is not stored; those are returned. The rows are
        compared only if some other connection committed since they were read
        (SQLite's ``data_version`` says so, in the same transaction)."""
        storing = [touch for touch in batch.touches if touch.store]
        if not storing:
            return []
        now = time.time()
        for touch in storing:
            for marker in touch.markers:
                set_field(touch.item, marker, now)
            if touch.wrote and RENAMED not in touch.markers:
                self._keep_renamed_honest(touch.item)
        # Until the batch is reported, the journal says which items it marks and
        # with which time: a run that resumes this job after the process stopped
        # in between tells its own committed work from anyone else's by it.
        if not batch.unreported:
            batch.unreported = self._intend_many([(UNREPORTED, t.id, b"", repr(now).encode())
                                                  for t in storing if t.markers])

        def store(tx: Transaction) -> list[Touch]:
            if batch.versions == {_data_version(tx)}:
                conflicted = []  # no other connection has committed anything since the rows were read
            else:  # an item changed, or its album (its destination may have): done again from the new state
                current = _raw_rows(tx, [t.id for t in storing])
                albums_now = _raw_rows(tx, sorted(batch.album_rows), ALBUM_TABLES)
                changed = {key for key, row in batch.album_rows.items() if albums_now.get(key) != row}
                conflicted = [touch for touch in storing
                              if current.get(touch.id) != touch.row or _album_id(touch.row) in changed]
            batch.left_out = {touch.id for touch in conflicted}
            store_many(tx, [touch.item for touch in storing if touch.id not in batch.left_out])
            return conflicted

        conflicted = self._in_transaction([touch.item for touch in storing], store, committed=batch)
        for touch in storing:
            touch.to(CONFLICTED if touch.id in batch.left_out else COMMITTED)
        return conflicted

    def _store(self, models: Sequence[Any], store: Callable[[Any], None]) -> None:
        """Store models in one transaction (retried while another process holds the lock)."""
        if self.pretend:
            for model in models:
                store(model)
            return

        def store_all(tx: Transaction) -> None:
            for model in models:
                store(model)

        self._in_transaction(models, store_all)

    def _in_transaction(self, models: Sequence[Any], work: Callable[[Transaction], T],
                        committed: Batch | None = None) -> T:
        """``work`` in one all-or-nothing transaction, retried while another
        process holds the lock. The guard is asked before every attempt and
        again inside the transaction, just before COMMIT: the wait for the write
        lock can be long, and the claim may be lost during it (fencing).

        ``committed`` is the batch whose commit this is: it is flagged in the
        same breath as the COMMIT, with Ctrl-C held, so an undo after a signal
        always knows whether the library has the batch (it has, once COMMIT
        returned). The wait for another writer's lock stays interruptible.

        beets' ``store()`` clears dirty flags as it goes; a rolled-back attempt
        must put them back or the retry would store nothing.
        """
        dirty = dirty_flags(models)
        for attempt in range(1, self.settings.commit_attempts + 1):
            self.guard()
            try:
                wait_until_writable(self.lib)  # outside the held signals: Ctrl-C works while we wait
                with _signals_deferred():
                    with atomic(self.lib) as tx:
                        done = work(tx)
                        self.guard()  # an exception here rolls the transaction back
                    if committed is not None:
                        committed.committed = True
                    return done
            except LibraryLockedError:
                restore_dirty_flags(models, dirty)
                if attempt == self.settings.commit_attempts:
                    raise
                self.log.warning("library locked; retrying the commit of {} items ({}/{})",
                                 len(models), attempt, self.settings.commit_attempts - 1)
                time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def _settle_conflicts(self, batch: Batch, conflicted: list[Touch], redo: bool) -> list[int]:
        """Put the files of items another program changed mid-batch back in line
        with the library; do them again (from the new state) or report them."""
        again = []
        for touch in conflicted:
            with _signals_deferred():
                problem = self._put_back(touch)
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

    # --- undo -----------------------------------------------------------------

    def _abort(self, exc: BaseException, summary: Summary, sink: Sink) -> None:
        """The run cannot go on: put the uncommitted batch back on disk, say so, stop."""
        batch = self._batch
        self._stop_worker()  # first: nothing may touch a file while the batch is put back
        if not batch.committed:
            batch.results = _known(batch.outcomes)
        why = self._why(exc)
        summary.status = ("cancelled" if isinstance(exc, (KeyboardInterrupt, Cancelled))
                          else "failed" if isinstance(exc, Exception) else "interrupted")
        self.log.debug("the run stops: {}", why, exc_info=True)  # the summary's error tells the user
        if self.pretend:
            summary.error = why
            return
        worked = [touch for touch in batch.touches if touch.store or touch.intents]
        undone, problems = 0, []
        for touch in reversed(batch.touches):  # newest first
            if not touch.intents:
                continue  # committed already, or nothing happened to its file
            problem = self._put_back(touch)
            if problem is None:
                undone += 1
            else:
                problems.append(f"{readable(touch.item.path)}: {problem}")
        parts = [why]
        if worked and not batch.committed:
            parts.append(f"the last batch of {len(worked)} item{'s' if len(worked) != 1 else ''} was undone on disk "
                         f"({undone} file{'s' if undone != 1 else ''} put back); nothing of it was recorded")
        if problems:
            parts.append(f"{len(problems)} file{'s' if len(problems) != 1 else ''} could not be put back and "
                         f"stay in the journal for the next run to settle: " + "; ".join(problems[:3]))
        summary.error = "; ".join(parts)
        self._report_last_batch(batch, exc, why, summary, sink)

    def _report_last_batch(self, batch: Batch, exc: BaseException, why: str, summary: Summary, sink: Sink) -> None:
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
                    result.success, result.dest, result.error = False, None, f"{result.file}: not recorded: {why}"
        else:
            batch.results = []
        try:
            self._report(batch, summary, sink)
        except Exception:  # the sink may be what failed (the job store)
            self.log.debug("could not report the stopped run's last batch", exc_info=True)

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, LibraryLockedError):
            return (f"the library {util.displayable_path(self.lib.path)} stayed locked by another process past "
                    f"{self.settings.commit_attempts} attempts (each waits beets' 'timeout' of {self.lib.timeout:g} s)")
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted"
        if isinstance(exc, Terminated):
            return str(exc)
        if isinstance(exc, sqlite3.Error):
            return f"the library {util.displayable_path(self.lib.path)} failed: {exc}"
        if not isinstance(exc, Exception):
            return f"stopped ({type(exc).__name__})"
        return str(exc) or type(exc).__name__

    def _put_back(self, touch: Touch) -> str | None:
        """Make a touched file match the library again and forget its intents;
        return what went wrong instead (its intents then stay in the journal)."""
        try:
            self._restore(touch)
        except Exception as exc:
            self.log.debug("could not put {} back", util.displayable_path(touch.item.path), exc_info=True)
            return str(exc) or type(exc).__name__
        try:
            self._forget(touch.intents)
        except Exception:  # they describe a settled state now: the next run's repair only drops them
            self.log.debug("could not forget settled intents", exc_info=True)
        touch.intents = []
        if touch.state is not COMMITTED:  # (a signal between a commit and its forget: nothing to put back)
            touch.to(UNDONE)
        return None

    def _restore(self, touch: Touch) -> None:
        """The file where the library says, with the tags the library has.

        Driven by the library as it is now, so it is right whether or not the
        batch's commit happened (Ctrl-C can land just after it). If the
        library cannot be read, it said ``touch.row`` when we read it.
        """
        item = touch.item
        if touch.dest is not None and not touch.moved:  # interrupted somewhere in its move
            if self._after_failed_move(touch.src, touch.dest) == "dst":
                item.path, touch.moved = touch.dest, True
        try:
            found = self._read(touch.id)
        except sqlite3.Error:
            found = None
        fresh = found[1] if found is not None else None
        where = fresh.path if fresh is not None else touch.src
        if touch.moved and not util.samefile(item.path, where):
            if where != touch.src:
                raise ItemError(f"the library now says {util.displayable_path(where)} (another program "
                                "changed it); the file stays where it is")
            self._move_back(touch)
        if touch.wrote:
            for place in {touch.src, item.path}:  # a helper killed mid-write leaves its temp copy
                remove_stale_temps(place)
            model = fresh if fresh is not None else _model(self.lib, touch.row)
            changes = self._media_changes(touch.changes)
            put_back_fields(item.path, changes, {key: model.get(key) for key in changes}, self._id3v23)
            touch.wrote = False

    def _move_back(self, touch: Touch) -> None:
        item, src = touch.item, touch.src
        dst = item.path
        if _exists(src):
            raise ItemError(f"cannot move {util.displayable_path(dst)} back: "
                            f"{util.displayable_path(src)} is taken")
        util.mkdirall(src)
        try:  # killed mid-copy, the next run's repair removes the partial copy at src
            reverse = [self._intend(ITEM, touch.id, dst, src)]
        except RunAborted:  # the journal is what failed: move back all the same
            reverse = []
        try:
            self._move(item, src)
        except BaseException:
            where = self._after_failed_move(dst, src)
            if where != "dst":
                if where == "src":  # still at dst, intact, no partial copy: the first intent says it all
                    with suppress(RunAborted):
                        self._forget(reverse)
                raise
            item.path = src  # it went back after all (the error came later)
        touch.moved = False
        util.prune_dirs(os.path.dirname(dst), self.lib.directory, clutter=self.clutter)
        with suppress(RunAborted):
            self._forget(reverse)

    # --- album art ------------------------------------------------------------

    def _move_art(self, album_ids: set[int]) -> None:
        """Album art follows its items (as with ``beet move``), journaled; an
        art move the library does not record is moved back."""
        if self.pretend or not album_ids or self.journal is None:
            return
        moved: list[tuple[Album, int, bytes, bytes, int]] = []  # album, id, from, to, intent
        try:
            for album_id in sorted(album_ids):
                album = self.lib.get_album(album_id)
                src = album.artpath if album is not None else None
                if album is None or not src or not _exists(src):
                    continue
                wanted = album.art_destination(src)
                if util.samefile(wanted, src):  # already in place (before a unique name is made up)
                    continue
                dest = unique_destination(wanted, set())
                self.guard()
                intent = self._intend(ALBUM, album_id, src, dest)
                try:
                    util.move(src, dest)
                except BaseException as exc:
                    with _signals_deferred():
                        where = self._after_failed_move(src, dest)
                        if where == "dst":
                            album.artpath = dest
                            moved.append((album, album_id, src, dest, intent))
                        elif where == "src":
                            self._forget([intent])
                    if not isinstance(exc, Exception):
                        raise
                    self.log.warning("album art of {} stays where it is: {}", album, exc)
                    continue
                album.artpath = dest
                moved.append((album, album_id, src, dest, intent))
                util.prune_dirs(os.path.dirname(src), self.lib.directory, clutter=self.clutter)
            if moved:
                self._art_moved.update(album_id for _, album_id, _, _, _ in moved)
                self._store([album for album, _, _, _, _ in moved], lambda album: album.store(inherit=False))
        except BaseException:
            with _signals_deferred():
                self._move_art_back(moved)
            raise
        self._forget([intent for _, _, _, _, intent in moved])

    def _move_art_back(self, moved: list[tuple[Album, int, bytes, bytes, int]]) -> None:
        for _, album_id, src, dst, intent in reversed(moved):
            try:
                fresh = self.lib.get_album(album_id)
                if fresh is not None and fresh.artpath == dst:
                    self._forget([intent])  # recorded after all
                    continue
                util.mkdirall(src)
                try:
                    util.move(dst, src)
                except BaseException:
                    remove_partial_copies(src)
                    raise
                self._forget([intent])
            except Exception as exc:  # the intent stays: the next run's repair settles it
                self.log.warning("album art {} could not be moved back: {}", util.displayable_path(dst), exc)


def _few(ids: Sequence[int], shown: int = 10) -> str:
    return ", ".join(map(str, ids[:shown])) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


def _exists(path: bytes) -> bool:
    return os.path.exists(util.syspath(path))


def _parts(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in groups small enough for one statement's parameters."""
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))


ITEM_TABLES = ("items", "item_attributes")
ALBUM_TABLES = ("albums", "album_attributes")


def _raw_rows(tx: Transaction, ids: Sequence[int], tables: tuple[str, str] = ITEM_TABLES) -> dict[int, Row]:
    """Items (or albums, with ``ALBUM_TABLES``) as stored, by id (absent: removed)."""
    table, attributes = tables
    found: dict[int, Row] = {}
    for part in _parts(ids):
        rows = tx.query(f"SELECT * FROM {table} WHERE id IN ({_marks(part)})", part)
        if not rows:
            continue
        names = tuple(rows[0].keys())
        at = names.index("id")
        for row in rows:
            values = tuple(row)
            found[values[at]] = (names, values, {})
        for row in tx.query(f"SELECT entity_id, key, value FROM {attributes} "
                            f"WHERE entity_id IN ({_marks(part)})", part):
            if row[0] in found:
                found[row[0]][2][row[1]] = row[2]
    return found


def _album_id(row: Row) -> int | None:
    names, values, _ = row
    return values[names.index("album_id")]


def _marked_at(flex: dict[str, Any], markers: Sequence[str], when: float) -> bool:
    """Every one of ``markers`` holds ``when`` (markers hold epoch times; the
    library keeps them as text of 15 significant digits: ~10 us here)."""
    try:
        return all(marker in flex and abs(float(flex[marker]) - when) < MARK_TOLERANCE for marker in markers)
    except (TypeError, ValueError):  # a marker someone set by hand to something else
        return False


def _data_version(tx: Transaction) -> int:
    """SQLite's ``PRAGMA data_version``: it changes when another connection
    (another process, another thread) commits to the library, and only then."""
    return int(tx.query("PRAGMA data_version")[0][0])


def _known(outcomes: Sequence[Touch | ItemResult]) -> list[ItemResult]:
    """The results known so far, in id order (a touch the helper has not reported on has none)."""
    results = []
    for outcome in outcomes:
        result = outcome.result if isinstance(outcome, Touch) else outcome
        if result is not None:
            results.append(result)
    return results


def _model(lib: Library, row: Row) -> Item:
    """The item a stored row describes (with copies: ``row`` stays as read)."""
    names, values, flex = row
    return model_from_row(Item, lib, dict(zip(names, values)), dict(flex))


def _filled(row: Row) -> set[str]:
    """The fields of a stored row that hold something."""
    names, values, flex = row
    return {name for name, value in zip(names, values) if value} | {key for key, value in flex.items() if value}


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM handler that raises) while files are put in
    order; deliver it afterwards. Only the main thread receives signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            first, frame = caught[0]
            previous[first](first, frame)


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]
