"""Album art follows its items, as with ``beet move``: journaled, and moved back if not recorded."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from beets import util

from .journal import ALBUM, PATH_FIELD
from .planner import unique_destination
from .recovery import remove_partial_copies
from .signals import signals_deferred
from .undo import located

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .journal import Journal, NoJournal

Moved = tuple["Album", int, bytes, bytes, int]  # album, its id, from, to, the intent
ART = PATH_FIELD[ALBUM]  # the album field an art move changes (in a job's record, as text: ``os.fsdecode``)


class ArtMover:
    """Moves the art of albums whose items moved, after their batch's commit."""

    def __init__(self, lib: Library, journal: Journal | NoJournal, *, guard: Callable[[], None], log: BeetsLogger,
                 clutter: Sequence[str], store: Callable[[Sequence[Album]], None],
                 destination: Callable[[Album, bytes], bytes] | None = None) -> None:
        self.lib, self.journal, self.guard, self.log, self.clutter = lib, journal, guard, log, clutter
        self._store = store  # the albums' new ``artpath``, in one transaction
        # Where an album's art goes: beets' ``art_destination`` (an undo: where its job found it, reversal.py).
        self._destination = destination or (lambda album, src: album.art_destination(src))

    def move(self, album_ids: set[int]) -> set[int]:
        """Each album's art to where beets would put it now; the albums whose
        art moved (their ``artpath`` changed). An art move the library does
        not record is moved back."""
        moved: list[Moved] = []
        try:
            for album_id in sorted(album_ids):
                self._move_one(album_id, moved)
            if moved:
                self._store([album for album, _, _, _, _ in moved])
        except BaseException:
            with signals_deferred():
                self._move_back(moved)
            raise
        self.journal.forget([intent for _, _, _, _, intent in moved])
        return {album_id for _, album_id, _, _, _ in moved}

    def _move_one(self, album_id: int, moved: list[Moved]) -> None:
        album = self.lib.get_album(album_id)
        src = album.artpath if album is not None else None
        if album is None or not src or not os.path.exists(util.syspath(src)):
            return
        wanted = self._destination(album, src)
        if util.samefile(wanted, src):  # already in place (before a unique name is made up)
            return
        dest = unique_destination(wanted, set())
        if dest != wanted:  # (beets' rule for art; said, since an undo promises the old name)
            self.log.warning("album art of {} goes to {}: {} is another file", album, util.displayable_path(dest),
                             util.displayable_path(wanted))
        self.guard()
        intent = self.journal.intend_many([(ALBUM, album_id, src, dest)])[0]
        self.journal.record_albums({album_id: {ART: [os.fsdecode(src), os.fsdecode(dest)]}})  # for an undo
        try:
            util.move(src, dest)
        except BaseException as exc:
            with signals_deferred():
                where = located(src, dest, self.log)
                if where == "dst":
                    album.artpath = dest
                    moved.append((album, album_id, src, dest, intent))
                elif where == "src":
                    self.journal.forget([intent])
            if not isinstance(exc, Exception):
                raise
            self.log.warning("album art of {} stays where it is: {}", album, exc)
            return
        album.artpath = dest
        moved.append((album, album_id, src, dest, intent))
        util.prune_dirs(os.path.dirname(src), self.lib.directory, clutter=self.clutter)

    def _move_back(self, moved: list[Moved]) -> None:
        for _, album_id, src, dst, intent in reversed(moved):
            try:
                fresh = self.lib.get_album(album_id)
                if fresh is not None and fresh.artpath == dst:
                    self.journal.forget([intent])  # recorded after all
                    continue
                util.mkdirall(src)
                try:
                    util.move(dst, src)
                except BaseException:
                    remove_partial_copies(src)
                    raise
                self.journal.forget([intent])
            except Exception as exc:  # the intent stays: the next run's repair settles it
                self.log.warning("album art {} could not be moved back: {}", util.displayable_path(dst), exc)
