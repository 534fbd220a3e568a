"""The engine: one operation over a list of item ids, for every caller.

The CLI, the web jobs and the import hook all hand ids to ``Engine.run`` and
differ only in the ``Sink`` that shows what happens. Per item the engine runs
the operation's steps through beets (normalize the tags and ``Item.write``;
``Item.destination`` and ``Item.move_file``), then commits items in batches:
one library transaction holds the item changes and their markers together,
bounded by count and by time so other readers are never locked out for long.
A batch's events are sent after its commit, so "success" always means the
marker is in the library. Every move and tag write is journaled first (see
journal.py).

Files and library agree at every exit. Each item is read from the library
just before its file work; the commit compares its row with what was read
and leaves out items another program changed meanwhile: their files are put
back in line with the library and they are done again from the new state.
A run that cannot commit (library locked past the retries or failing, claim
lost, job store unusable, Ctrl-C) puts its uncommitted batch back on disk -
files moved back, tags rewritten from the library - before it stops, and
says so. A journal intent is forgotten only once what it describes is
committed or undone; anything that cannot be undone stays for the next run.
"""

from __future__ import annotations

import filecmp
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

from .beets_compat import FileOperationError, dirty_flags, model_from_row, restore_dirty_flags
from . import CONFIG_DEFAULTS
from .errors import RunAborted
from .events import readable
from .files import remove_partial_copies, unique_destination, write_tags
from .markers import unmarked_query
from .operations import RENAMED
from .transaction import LibraryLockedError, atomic, rolled_back

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from beets.dbcore.db import Transaction
    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .jobs import JobStore
    from .normalize import Rules
    from .operations import Operation

T = TypeVar("T")

# What can go wrong with one item without stopping the run.
ITEM_ERRORS = (FileOperationError, FilesystemError, OSError)


class ItemError(Exception):
    """An item cannot be done; the message names the file and the reason."""


@dataclass
class ItemResult:
    """What happened to one item; becomes one ``item`` event."""

    item_id: int
    file: str | None
    dest: str | None = None
    success: bool = True
    error: str | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    skipped: bool = False
    # In-process renderers only (``--pretend`` diffs); never serialized.
    before: Item | None = None
    after: Item | None = None


@dataclass
class Summary:
    """Counters of a run; becomes the ``done`` event."""

    total: int
    status: str = "running"
    current: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[ItemResult] = field(default_factory=list)
    error: str | None = None

    def count(self, result: ItemResult) -> int:
        self.current += 1
        if result.skipped:
            self.skipped += 1
        elif result.success:
            self.succeeded += 1
        else:
            self.failed += 1
            self.failures.append(result)
        return self.current


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


@dataclass
class Journal:
    """The running job's handle on the move journal."""

    store: JobStore
    job: int

    def intend(self, kind: str, entity: int, src: bytes, dst: bytes) -> int:
        return self.store.intend(self.job, kind, entity, src, dst)

    def forget(self, ids: Sequence[int]) -> None:
        self.store.forget(ids)


Row = tuple[tuple[tuple[str, Any], ...], tuple[tuple[str, Any], ...]]  # an item's columns and flexible attributes, raw
REDO_ATTEMPTS = 2  # an item another writer changed mid-batch is done again from its new state, this often


@dataclass(eq=False)
class Touch:
    """One item a batch works on: how it was read and what was done to its file.

    ``intents`` are its journal entries still open: forgotten only once the
    batch has committed, or once the file is put back to match the library.
    """

    id: int
    item: Item  # as changed: tags, path, markers
    row: Row  # its library row as read; a different row at commit time is another writer's change
    original: Item  # as read: what an undo writes when the library cannot be read
    src: bytes  # where the file was
    dest: bytes | None = None  # where a move was tried to (it may have happened even if it raised)
    result: ItemResult | None = None
    markers: tuple[str, ...] = ()
    store: bool = False  # the commit stores the item (with ``markers``)
    wrote: bool = False  # the file may hold tags the library does not
    moved: bool = False  # the file is at ``item.path``, no longer at ``src``
    intents: list[int] = field(default_factory=list)


@dataclass
class Batch:
    """Work done since the last commit."""

    started: float = field(default_factory=time.monotonic)
    results: list[ItemResult] = field(default_factory=list)
    touches: list[Touch] = field(default_factory=list)
    taken: set[bytes] = field(default_factory=set)  # destinations promised in this batch
    vacated: set[bytes] = field(default_factory=set)  # directories items left
    albums: set[int] = field(default_factory=set)  # albums whose items moved (art follows)
    committed: bool = False


class Engine:
    """Runs one operation; construct per run.

    ``guard`` (fencing) is called before every file operation and every
    commit; it raises ``ClaimLost`` once this process no longer owns the
    library, and the run then does no more forward work: it puts its
    uncommitted batch back on disk and stops, failed.
    """

    def __init__(self, lib: Library, op: Operation, rules: Rules, settings: Settings, log: BeetsLogger,
                 journal: Journal | None = None, force: bool = False, pretend: bool = False,
                 guard: Callable[[], None] | None = None) -> None:
        if not pretend and journal is None:
            raise ValueError("a real run needs the journal")
        self.lib, self.op, self.rules, self.settings, self.log = lib, op, rules, settings, log
        self.journal, self.force, self.pretend = journal, force, pretend
        # Fencing: raises ClaimLost once this process no longer owns the library.
        self.guard: Callable[[], None] = guard or (lambda: None)
        self.todo = unmarked_query(op.name)
        self.clutter = beets.config["clutter"].as_str_seq()
        self._batch = Batch()
        self._redone: Counter[int] = Counter()

    # --- the run ------------------------------------------------------------

    def run(self, ids: Sequence[int], sink: Sink, stop: Callable[[], bool] = lambda: False, *,
            resume: Summary | None = None) -> Summary:
        """Run over ``ids``; the summary says how it ended.

        With ``resume``, continue that run: its counters go on (``total`` stays
        as given), ``ids`` are the ones it had not reached, and no ``start`` is
        sent (the job's stream has it already).

        Every exit leaves files and library in agreement: an error that ends
        the run (library locked or failing, claim lost, job store unreadable)
        and Ctrl-C put the uncommitted batch back on disk first; the summary's
        ``error`` says what happened to it. Ctrl-C (and any other
        ``BaseException``) is re-raised after ``done``.
        """
        if resume is None:
            summary = Summary(total=len(ids))
            sink.start(len(ids))
        else:
            summary = resume
            summary.error = None
        with self.lib.music_dir_context():  # paths expand in any thread
            try:
                summary.status = "completed"
                for chunk in _chunks(ids, self.settings.batch_size):
                    if self._run_chunk(chunk, summary, sink, stop):
                        summary.status = "cancelled"
                        break
            except BaseException as exc:
                with _signals_deferred():  # a second Ctrl-C must not cut the undo short
                    self._abort(exc, summary, sink)
                    sink.done(summary)
                if isinstance(exc, Exception):
                    return summary
                raise
        sink.done(summary)
        return summary

    def _run_chunk(self, ids: Sequence[int], summary: Summary, sink: Sink, stop: Callable[[], bool]) -> bool:
        """Process one chunk of ids; return True if asked to stop."""
        albums = self._normalized_albums(ids)
        # Path formats read album-level fields from the album row, so changed
        # albums are stored before any item moves. --pretend stores them in a
        # transaction it rolls back at the end of the chunk (held only then).
        scope: AbstractContextManager[Any] = rolled_back(self.lib) if self.pretend and albums else nullcontext()
        with scope:
            if albums:
                self._store(albums, self._store_album)
            queue = deque(ids)
            while queue:
                batch = self._batch = Batch()
                while queue:
                    if stop():
                        self._flush(batch, summary, sink, redo=False)
                        return True
                    batch.results.append(self._one(queue.popleft(), batch))
                    if time.monotonic() - batch.started >= self.settings.batch_seconds:
                        break
                queue.extend(self._flush(batch, summary, sink))  # items another writer changed meanwhile
        return False

    def _wanted(self, item: Item) -> bool:
        return self.force or self.todo.match(item)

    # --- one item -------------------------------------------------------------

    def _one(self, item_id: int, batch: Batch) -> ItemResult:
        """Do one item, read from the library just now (not when its chunk began)."""
        found = self._read(item_id)
        if found is None:
            return ItemResult(item_id, None, skipped=True, error="removed from the library during the run")
        row, item = found
        file = readable(item.path)
        if not self._wanted(item):
            return ItemResult(item_id, file, file, skipped=True, error="already done by another run")
        before = item.copy() if self.pretend else None
        touch = Touch(item_id, item, row, item.copy(), item.path)
        if not self.pretend:
            batch.touches.append(touch)
        try:
            if not os.path.exists(util.syspath(item.path)):
                raise ItemError(f"file not found: {file}")
            changes = self._normalize(item)
            if changes and not self.pretend:
                self._write_tags(touch)
            if self.op.rename:
                self._rename(touch, batch)
        except (RunAborted, sqlite3.Error):
            raise  # the run cannot go on: claim lost, job store or library unusable
        except Exception as exc:  # one item's trouble never stops the run
            touch.store = touch.wrote or touch.moved  # the file changed: record what it holds, no marker
            touch.result = ItemResult(item_id, file, success=False, error=readable(self._describe(exc, file)))
            return touch.result
        touch.store, touch.markers = not self.pretend, self.op.markers
        after = item if self.pretend else None
        touch.result = ItemResult(item_id, file, readable(item.path), changes=changes, before=before, after=after)
        return touch.result

    def _read(self, item_id: int) -> tuple[Row, Item] | None:
        """The item as the library has it now, and its raw row for the conflict check.

        Both come from the same rows, so a commit in between can only show up
        as a conflict (done again), never hide one.
        """
        with self.lib.transaction() as tx:
            raw = _raw_rows(tx, [item_id]).get(item_id)
        if raw is None:
            return None
        fixed, flex = raw
        return _row(raw), model_from_row(Item, self.lib, fixed, flex)

    def _describe(self, exc: Exception, file: str) -> str:
        """beets' file errors already name the path; anything else gets it added."""
        if isinstance(exc, (*ITEM_ERRORS, ItemError)):
            return str(exc)
        self.log.debug("unexpected error on {}", file, exc_info=True)
        return f"{file}: {type(exc).__name__}: {exc}"

    def _normalize(self, model: Item | Album) -> dict[str, list[Any]]:
        if not self.op.normalize:
            return {}
        present = set(model.keys(with_album=False)) if isinstance(model, Item) else set(model.keys())
        return self.rules.apply(model, present)

    def _intend(self, kind: str, entity: int, src: bytes, dst: bytes) -> int:
        assert self.journal is not None
        return self.journal.intend(kind, entity, src, dst)

    def _forget(self, intents: Sequence[int]) -> None:
        if intents and self.journal is not None:
            self.journal.forget(intents)

    def _write_tags(self, touch: Touch) -> None:
        """``write_tags``, journaled: if the batch never commits, the file is
        rewritten from the library (by the undo, or by the next run's repair)."""
        self.guard()
        item = touch.item
        intent = self._intend("tags", touch.id, item.path, item.path)
        touch.intents.append(intent)
        touch.wrote = True  # from here on, an undo rewrites the file from the library
        try:
            write_tags(item)
        except Exception:
            # write_tags leaves the file as it was when it raises: nothing to undo.
            touch.wrote = False
            self._forget([intent])
            touch.intents.remove(intent)
            raise

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
        if item.get(RENAMED, with_album=False) is None or util.samefile(item.destination(), item.path):
            return False
        del item[RENAMED]
        return True

    def _rename(self, touch: Touch, batch: Batch) -> None:
        item = touch.item
        dest = item.destination()
        if util.samefile(dest, item.path):
            return
        dest = unique_destination(dest, batch.taken)
        batch.taken.add(dest)
        if self.pretend:
            item.path = dest
            return
        self.guard()
        util.mkdirall(dest)
        touch.dest = dest
        intent = self._intend("item", touch.id, item.path, dest)
        touch.intents.append(intent)
        try:
            self._move(item, dest)
        except BaseException as exc:
            with _signals_deferred():
                where = self._after_failed_move(touch.src, dest)
                if where == "dst":  # it moved after all: commit or undo it with the batch
                    item.path, touch.moved = dest, True
                    self._vacate(batch, item, touch.src)
                elif where == "src" and isinstance(exc, Exception):  # at src, intact, no partial copy left
                    self._forget([intent])
                    touch.intents.remove(intent)
                    touch.dest = None
                elif where is None:  # unsure: left in the journal for the next run's repair
                    touch.intents.remove(intent)
            raise
        touch.moved = True
        self._vacate(batch, item, touch.src)

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
        item.path = dest

    def _after_failed_move(self, src: bytes, dst: bytes) -> str | None:
        """Where the file is after a move from ``src`` to ``dst`` raised (or
        was interrupted): ``"src"`` or ``"dst"``, with no partial copy left
        and never both; ``None`` if that could not be made so."""
        try:
            remove_partial_copies(dst)
            at_src, at_dst = _exists(src), _exists(dst)
            if at_src and at_dst:
                # Across devices the copy finished but the source was not removed yet.
                if filecmp.cmp(util.syspath(src), util.syspath(dst), shallow=False):
                    os.remove(util.syspath(dst))
                return "src"  # (a different file at dst is not ours)
            return "dst" if at_dst else "src"
        except OSError as exc:
            self.log.warning("could not tell where {} went after an interrupted move: {}",
                             util.displayable_path(src), exc)
            return None

    # --- commits --------------------------------------------------------------

    def _flush(self, batch: Batch, summary: Summary, sink: Sink, redo: bool = True) -> list[int]:
        """Commit the batch (items + markers), put back the items another
        writer changed meanwhile, then report. Returns the ids to do again."""
        conflicted = self._commit(batch)
        batch.committed = True
        done = [touch for touch in batch.touches if touch not in conflicted]
        self._forget([intent for touch in done for intent in touch.intents])
        for touch in done:
            touch.intents = []
        again = self._settle_conflicts(batch, conflicted, redo)
        if batch.results:  # reported before the art moves: those items are recorded whatever happens next
            sink.items([(summary.count(r), r) for r in batch.results], summary)
            batch.results = []
        self._move_art(batch.albums)
        for directory in batch.vacated:
            util.prune_dirs(directory, self.lib.directory, clutter=self.clutter)
        return again

    def _commit(self, batch: Batch) -> list[Touch]:
        """Store the batch's items and markers in one transaction. An item whose
        library row changed since it was read (another program committed a
        change meanwhile) is not stored; those are returned."""
        keep = [touch for touch in batch.touches if touch.store]
        if not keep:
            return []
        now = time.time()
        for touch in keep:
            for marker in touch.markers:
                touch.item[marker] = now
            if touch.wrote and RENAMED not in touch.markers:
                self._keep_renamed_honest(touch.item)

        def store(tx: Transaction) -> list[Touch]:
            current = {item_id: _row(raw) for item_id, raw in _raw_rows(tx, [t.id for t in keep]).items()}
            conflicted = [touch for touch in keep if current.get(touch.id) != touch.row]
            for touch in keep:
                if touch not in conflicted:
                    touch.item.store()
            return conflicted

        return self._in_transaction([touch.item for touch in keep], store)

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

    def _in_transaction(self, models: Sequence[Any], work: Callable[[Transaction], T]) -> T:
        """``work`` in one all-or-nothing transaction, retried while another
        process holds the lock. The guard is asked before every attempt and
        again inside the transaction, just before COMMIT: the wait for the write
        lock can be long, and the claim may be lost during it (fencing).

        beets' ``store()`` clears dirty flags as it goes; a rolled-back attempt
        must put them back or the retry would store nothing.
        """
        dirty = dirty_flags(models)
        for attempt in range(1, self.settings.commit_attempts + 1):
            self.guard()
            try:
                with atomic(self.lib) as tx:
                    done = work(tx)
                    self.guard()  # an exception here rolls the transaction back
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
        why = self._why(exc)
        summary.status = ("cancelled" if isinstance(exc, KeyboardInterrupt)
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
        if isinstance(exc, Exception) and not batch.committed and batch.results:
            for result in batch.results:
                if result.success and not result.skipped:
                    result.success, result.dest, result.error = False, None, f"{result.file}: not recorded: {why}"
            try:
                sink.items([(summary.count(r), r) for r in batch.results], summary)
            except Exception:  # the sink may be what failed (the job store)
                self.log.debug("could not report the undone batch", exc_info=True)
        batch.results = []

    def _why(self, exc: BaseException) -> str:
        if isinstance(exc, LibraryLockedError):
            return (f"the library {util.displayable_path(self.lib.path)} stayed locked by another process past "
                    f"{self.settings.commit_attempts} attempts (each waits beets' 'timeout' of {self.lib.timeout:g} s)")
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted"
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
        return None

    def _restore(self, touch: Touch) -> None:
        """The file where the library says, with the tags the library has.

        Driven by the library as it is now, so it is right whether or not the
        batch's commit happened (Ctrl-C can land just after it). If the
        library cannot be read, it said ``touch.original`` when we read it.
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
            model = fresh if fresh is not None else touch.original
            model.path = item.path
            write_tags(model)
            touch.wrote = False

    def _move_back(self, touch: Touch) -> None:
        item, src = touch.item, touch.src
        dst = item.path
        if _exists(src):
            raise ItemError(f"cannot move {util.displayable_path(dst)} back: "
                            f"{util.displayable_path(src)} is taken")
        util.mkdirall(src)
        try:  # killed mid-copy, the next run's repair removes the partial copy at src
            reverse = [self._intend("item", touch.id, dst, src)]
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
                intent = self._intend("album", album_id, src, dest)
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


def _exists(path: bytes) -> bool:
    return os.path.exists(util.syspath(path))


def _parts(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in groups small enough for one statement's parameters."""
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))


def _raw_rows(tx: Transaction, ids: Sequence[int]) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """Items' columns and flexible attributes as stored, by id (absent: removed)."""
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for part in _parts(ids):
        for row in tx.query(f"SELECT * FROM items WHERE id IN ({_marks(part)})", part):
            found[row["id"]] = (dict(row), {})
        for row in tx.query(f"SELECT entity_id, key, value FROM item_attributes "
                            f"WHERE entity_id IN ({_marks(part)})", part):
            if row["entity_id"] in found:
                found[row["entity_id"]][1][row["key"]] = row["value"]
    return found


def _row(raw: tuple[dict[str, Any], dict[str, Any]]) -> Row:
    fixed, flex = raw
    return tuple(sorted(fixed.items())), tuple(sorted(flex.items()))


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM handler that raises) while files are put in
    order; deliver it afterwards. Only the main thread receives signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
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
