"""Recording a batch: its items, their markers and what conflicts, in one library transaction.

One commit per batch, bounded by count and time so other readers are never
locked out for long. The items' rows are compared with what was read only
when another connection committed since (SQLite's ``data_version``): an
item another program changed, or whose album it changed (path formats read
album fields), is left out, put back and done again from its new state.
Until a committed batch is reported, the journal names the items it marked
and the marker time, so a run resuming the job after a stop can tell its
own committed work from anyone else's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from . import stored
from .beets_compat import dirty_flags, restore_dirty_flags, set_field, store_many
from .journal import unreported_entry
from .layout import LAYOUT
from .moves import library_durable
from .operations import RENAMED
from .reversal import UNDONE_MARKERS
from .signals import signals_deferred
from .states import COMMITTED, CONFLICTED
from .transaction import LibraryLockedError, atomic, wait_until_writable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.dbcore.db import Transaction
    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .batch import Batch, Touch
    from .journal import Journal, NoJournal
    from .planner import Planner

T = TypeVar("T")


class Committer:
    """Stores batches (construct per run); ``attempts`` tries while another process holds the lock."""

    def __init__(self, lib: Library, journal: Journal | NoJournal, planner: Planner, *, guard: Callable[[], None],
                 log: BeetsLogger, attempts: int, pretend: bool) -> None:
        self.lib, self.journal, self.planner, self.guard, self.log = lib, journal, planner, guard, log
        self.attempts, self.pretend = attempts, pretend

    def commit(self, batch: Batch, albums: Sequence[Album] = ()) -> list[Touch]:
        """Store the batch's items and markers in one transaction, with
        ``albums`` (normalized ones of the next chunk: see ``store_albums``);
        the items another program changed since they were read are not
        stored, and are returned."""
        storing = [touch for touch in batch.touches if touch.store]
        if not storing and not albums:
            return []
        now = time.time()
        for touch in storing:
            for marker in touch.markers:
                set_field(touch.item, marker, now)
            if RENAMED in touch.markers:  # with the configuration it was placed under (layout.py)
                set_field(touch.item, LAYOUT, self.planner.layout)
            if touch.wrote and RENAMED not in touch.markers:
                self.planner.keep_renamed_honest(touch.item)
            if touch.result is not None and touch.result.undo is not None:  # the markers as this commit leaves them
                touch.result.undo["after"] = {key: touch.item.get(key, with_album=False) for key in UNDONE_MARKERS}
        if not batch.unreported:  # what the report will say, in case the run stops before it
            batch.unreported = self.journal.intend_many([
                unreported_entry(t.id, now, t.result.recorded) for t in storing
                if t.result is not None and t.result.success and (t.markers or self.planner.reversal is not None)])

        def store(tx: Transaction) -> list[Touch]:
            if batch.versions == {stored.data_version(tx)}:
                conflicted = []  # no other connection has committed anything since the rows were read
            else:  # an item changed, or its album (its destination may have): done again from the new state
                current = stored.rows(tx, [t.id for t in storing])
                albums_now = stored.rows(tx, sorted(batch.album_rows), stored.ALBUM_TABLES)
                changed = {key for key, row in batch.album_rows.items() if albums_now.get(key) != row}
                conflicted = [touch for touch in storing
                              if current.get(touch.id) != touch.row or stored.album_of(touch.row) in changed]
            batch.left_out = {touch.id for touch in conflicted}
            store_many(tx, [touch.item for touch in storing if touch.id not in batch.left_out])
            for album in albums:
                self._store_album(album)
            return conflicted

        conflicted = self.in_transaction([*(touch.item for touch in storing), *albums], store, committed=batch)
        for touch in storing:
            touch.to(CONFLICTED if touch.id in batch.left_out else COMMITTED)
        return conflicted

    def store_albums(self, albums: Sequence[Album]) -> None:
        """Store normalized albums in one transaction (--pretend: in the caller's,
        which it rolls back); their items whose destination this changes lose
        ``renamed`` in the same commit (see ``Planner.keep_renamed_honest``)."""
        self.store(albums, self._store_album)

    def store_rows(self, albums: Sequence[Album]) -> None:
        """Store the albums as they are in memory (a new ``artpath``, fields an
        undo put back) in one transaction, leaving their items be."""
        self.store(albums, lambda album: album.store(inherit=False))

    def _store_album(self, album: Album) -> None:
        album.store(inherit=False)
        if self.pretend:
            return
        for item in album.items():
            if self.planner.keep_renamed_honest(item):
                item.store()

    def store(self, models: Sequence[Any], store: Callable[[Any], None]) -> None:
        """Store models in one transaction (retried while another process holds the lock)."""
        if self.pretend:
            for model in models:
                store(model)
            return

        def store_all(tx: Transaction) -> None:
            for model in models:
                store(model)

        self.in_transaction(models, store_all)

    def in_transaction(self, models: Sequence[Any], work: Callable[[Transaction], T],
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
        for attempt in range(1, self.attempts + 1):
            self.guard()
            try:
                wait_until_writable(self.lib)  # outside the held signals: Ctrl-C works while we wait
                with signals_deferred():
                    with atomic(self.lib) as tx:
                        done = work(tx)
                        self.guard()  # an exception here rolls the transaction back
                    if committed is not None:
                        committed.committed = True
                    library_durable(self.lib)
                    return done
            except LibraryLockedError:
                restore_dirty_flags(models, dirty)
                if attempt == self.attempts:
                    raise
                self.log.warning("library locked; retrying the commit of {} items ({}/{})",
                                 len(models), attempt, self.attempts - 1)
                time.sleep(min(2.0, 0.1 * 2**attempt))
        raise AssertionError("unreachable")
