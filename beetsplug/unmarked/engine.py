"""The engine: one operation over a list of item ids, for every caller.

The CLI, the web jobs and the import hook all hand ids to ``Engine.run`` and
differ only in the ``Sink`` that shows what happens. Per item the engine runs
the operation's steps through beets (normalize the tags and ``Item.write``;
``Item.destination`` and ``Item.move_file``), then commits items in batches:
one library transaction holds the item changes and their markers together,
bounded by count and by time so other readers are never locked out for long.
A batch's events are sent after its commit, so "success" always means the
marker is in the library. Every move is journaled first (see journal.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import beets
from beets import util
from beets.library import FileOperationError, Item
from beets.util import FilesystemError

from .events import readable
from .files import unique_destination, write_tags
from .markers import unmarked_query
from .selection import load_items
from .transaction import LibraryLockedError, atomic, rolled_back

if TYPE_CHECKING:
    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .jobs import JobStore
    from .normalize import Rules
    from .operations import Operation

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
    batch_size: int = 200
    batch_seconds: float = 0.5
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


@dataclass
class Batch:
    """Work done since the last commit."""

    started: float = field(default_factory=time.monotonic)
    results: list[ItemResult] = field(default_factory=list)
    keep: list[tuple[Item, tuple[str, ...]]] = field(default_factory=list)  # (item, markers to set)
    intents: list[int] = field(default_factory=list)  # journal ids, forgotten after the commit
    taken: set[bytes] = field(default_factory=set)  # destinations promised in this batch
    vacated: set[bytes] = field(default_factory=set)  # directories items left
    albums: set[int] = field(default_factory=set)  # albums whose items moved (art follows)


class Engine:
    """Runs one operation; construct per run."""

    def __init__(self, lib: Library, op: Operation, rules: Rules, settings: Settings, log: BeetsLogger,
                 journal: Journal | None = None, force: bool = False, pretend: bool = False) -> None:
        if not pretend and journal is None:
            raise ValueError("a real run needs the journal")
        self.lib, self.op, self.rules, self.settings, self.log = lib, op, rules, settings, log
        self.journal, self.force, self.pretend = journal, force, pretend
        self.todo = unmarked_query(op.name)
        self.clutter = beets.config["clutter"].as_str_seq()

    # --- the run ------------------------------------------------------------

    def run(self, ids: Sequence[int], sink: Sink, stop: Callable[[], bool] = lambda: False) -> Summary:
        summary = Summary(total=len(ids))
        sink.start(len(ids))
        with self.lib.music_dir_context():  # paths expand in any thread
            try:
                summary.status = "completed"
                for chunk in _chunks(ids, self.settings.batch_size):
                    if self._run_chunk(chunk, summary, sink, stop):
                        summary.status = "cancelled"
                        break
            except KeyboardInterrupt:
                summary.status = "cancelled"
                sink.done(summary)
                raise
            except Exception as exc:  # the run itself cannot go on (library locked, disk gone)
                self.log.debug("run failed", exc_info=True)
                summary.status, summary.error = "failed", str(exc)
        sink.done(summary)
        return summary

    def _run_chunk(self, ids: Sequence[int], summary: Summary, sink: Sink, stop: Callable[[], bool]) -> bool:
        """Process one loaded chunk; return True if asked to stop."""
        items = load_items(self.lib, ids)
        albums = self._normalized_albums([items[i] for i in ids if i in items and self._wanted(items[i])])
        # Path formats read album-level fields from the album row, so changed
        # albums are stored before any item moves. --pretend stores them in a
        # transaction it rolls back at the end of the chunk (held only then).
        scope: AbstractContextManager[Any] = rolled_back(self.lib) if self.pretend and albums else nullcontext()
        with scope:
            if albums:
                self._store(albums, lambda album: album.store(inherit=False))
            batch = Batch()
            for item_id in ids:
                if stop():
                    self._flush(batch, summary, sink)
                    return True
                try:
                    batch.results.append(self._one(item_id, items.get(item_id), batch))
                except KeyboardInterrupt:
                    self._flush(batch, summary, sink)
                    raise
                if time.monotonic() - batch.started >= self.settings.batch_seconds:
                    self._flush(batch, summary, sink)
                    batch = Batch()
            self._flush(batch, summary, sink)
        return False

    def _wanted(self, item: Item) -> bool:
        return self.force or self.todo.match(item)

    # --- one item -------------------------------------------------------------

    def _one(self, item_id: int, item: Item | None, batch: Batch) -> ItemResult:
        if item is None:
            return ItemResult(item_id, None, skipped=True, error="removed from the library during the run")
        file = readable(item.path)
        if not self._wanted(item):
            return ItemResult(item_id, file, file, skipped=True, error="already done by another run")
        before = item.copy() if self.pretend else None
        written = False
        try:
            if not os.path.exists(util.syspath(item.path)):
                raise ItemError(f"file not found: {file}")
            changes = self._normalize(item)
            if changes and not self.pretend:
                self._write_tags(item, batch)
                written = True
            if self.op.rename:
                self._rename(item, batch)
        except Exception as exc:  # one item's trouble never stops the run
            if written:  # the file has the new tags: record them, but no marker
                batch.keep.append((item, ()))
            return ItemResult(item_id, file, success=False, error=readable(self._describe(exc, file)))
        if not self.pretend:
            batch.keep.append((item, self.op.markers))
        after = item if self.pretend else None
        return ItemResult(item_id, file, readable(item.path), changes=changes, before=before, after=after)

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

    def _write_tags(self, item: Item, batch: Batch) -> None:
        """``Item.write``, journaled: killed before the batch commits, the file
        would hold tags the library does not; the next start rewrites them."""
        assert self.journal is not None
        intent = self.journal.intend("tags", item.id, item.path, item.path)
        try:
            write_tags(item)
        except BaseException:
            self.journal.forget([intent])
            raise
        batch.intents.append(intent)

    def _normalized_albums(self, items: list[Item]) -> list[Album]:
        """The albums of these items whose fields the rules changed (in memory)."""
        album_ids = {item.album_id for item in items if item.album_id}
        return [a for a in map(self.lib.get_album, album_ids) if a is not None and self._normalize(a)]

    def _rename(self, item: Item, batch: Batch) -> None:
        dest = item.destination()
        if util.samefile(dest, item.path):
            return
        dest = unique_destination(dest, batch.taken)
        batch.taken.add(dest)
        if self.pretend:
            item.path = dest
            return
        assert self.journal is not None
        util.mkdirall(dest)
        old = item.path
        move = self.journal.intend("item", item.id, old, dest)
        try:
            item.move_file(dest)  # beets' move: plugin events, cross-device copy
        except BaseException:
            self.journal.forget([move])
            raise
        if item.path != dest:  # another process took dest meanwhile; beets picked a new name
            self.journal.forget([move])
            move = self.journal.intend("item", item.id, old, item.path)
        batch.intents.append(move)
        batch.vacated.add(os.path.dirname(old))
        if item.album_id:
            batch.albums.add(item.album_id)

    # --- commits --------------------------------------------------------------

    def _flush(self, batch: Batch, summary: Summary, sink: Sink) -> None:
        """Commit the batch (items + markers), then report it."""
        if batch.keep:
            now = time.time()
            for item, markers in batch.keep:
                for marker in markers:
                    item[marker] = now
            try:
                self._store([item for item, _ in batch.keep], lambda item: item.store())
            except LibraryLockedError as exc:
                # Files moved are journaled: the next run repairs their paths.
                for result in batch.results:
                    if result.success and not result.skipped:
                        result.success, result.dest, result.error = False, None, f"not recorded: {exc}"
                sink.items([(summary.count(r), r) for r in batch.results], summary)
                raise
        if self.journal:
            self.journal.forget(batch.intents)
        self._move_art(batch.albums)
        for directory in batch.vacated:
            util.prune_dirs(directory, self.lib.directory, clutter=self.clutter)
        if batch.results:
            sink.items([(summary.count(r), r) for r in batch.results], summary)

    def _store(self, models: Sequence[Any], store: Callable[[Any], None]) -> None:
        """Store models in one transaction, retrying while another process holds the lock.

        beets' ``store()`` clears dirty flags as it goes; a rolled-back attempt
        must put them back or the retry would store nothing.
        """
        if self.pretend:
            for model in models:
                store(model)
            return
        dirty = [set(model._dirty) for model in models]
        for attempt in range(1, self.settings.commit_attempts + 1):
            try:
                with atomic(self.lib):
                    for model in models:
                        store(model)
                return
            except LibraryLockedError:
                for model, flags in zip(models, dirty):
                    model._dirty = set(flags)
                if attempt == self.settings.commit_attempts:
                    raise
                self.log.warning("library locked; retrying the commit of {} items ({}/{})",
                                 len(models), attempt, self.settings.commit_attempts - 1)
                time.sleep(min(2.0, 0.1 * 2**attempt))

    def _move_art(self, album_ids: set[int]) -> None:
        """Album art follows its items (as with ``beet move``), journaled too."""
        if self.pretend or not album_ids or self.journal is None:
            return
        moved, intents = [], []
        for album in filter(None, map(self.lib.get_album, album_ids)):
            if not album.artpath or not os.path.exists(util.syspath(album.artpath)):
                continue
            dest = unique_destination(album.art_destination(album.artpath), set())
            if dest == album.artpath:
                continue
            intents.append(self.journal.intend("album", album.id, album.artpath, dest))
            try:
                album.move_art()
            except FilesystemError as exc:
                self.log.warning("album art of {} stays where it is: {}", album, exc)
                continue
            moved.append(album)
        if moved:
            self._store(moved, lambda album: album.store(inherit=False))
        self.journal.forget(intents)


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]

