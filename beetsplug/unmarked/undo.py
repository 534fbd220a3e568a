"""Putting an item's file back in line with the library: the undo of a batch that was not recorded.

A run that cannot commit its batch (Ctrl-C, SIGTERM, the library locked past
the retries, the claim lost, the job store unusable), and an item another
program changed before the commit, put their files back before anything
else happens. What is put back is what the plan changed, and only that:

* the path: a moved file goes back to where the library still says it is
  (journaled, so a kill in the middle is finished by the next run);
* the tags: a write its worker did not report done (it may have torn the
  file) first gets the file's bytes back from the write's backup (files.py);
  then each field the plan changed that the file still holds the new
  value of gets the library's value back (``recovery.put_back_fields``); a tag
  the plan did not change is never written, so what other tools wrote into
  the file (tags the library does not hold) stays.

Driven by the library as it is now, so it is right whether or not the
batch's commit happened (a signal can land just after it).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import suppress
from typing import TYPE_CHECKING

from beets import plugins, util

from . import stored
from .batch import ItemError
from .beets_compat import set_field
from .errors import RunAborted, Terminated
from .files import remove_stale_temps, settle_backups
from .journal import ITEM
from .moves import release, sync_dirs
from .recovery import put_back_fields, where_after_failed_move
from .states import COMMITTED, UNDONE
from .transaction import LibraryLockedError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.library import Item, Library
    from beets.logging import BeetsLogger

    from .batch import Touch
    from .journal import Journal, NoJournal


class Undo:
    """Puts touched files back (construct per run)."""

    def __init__(self, lib: Library, journal: Journal | NoJournal, *, log: BeetsLogger, id3v23: bool,
                 clutter: Sequence[str], media_changes: Callable[[dict], dict]) -> None:
        self.lib, self.journal, self.log, self.id3v23, self.clutter = lib, journal, log, id3v23, clutter
        self._media_changes = media_changes

    def put_back(self, touch: Touch) -> str | None:
        """Make a touched file match the library again and forget its intents;
        return what went wrong instead (its intents then stay in the journal)."""
        try:
            self._restore(touch)
        except Exception as exc:
            self.log.debug("could not put {} back", util.displayable_path(touch.item.path), exc_info=True)
            return str(exc) or type(exc).__name__
        try:
            self.journal.forget(touch.intents)
        except Exception:  # they describe a state that holds now: the next run's repair only drops them
            self.log.debug("could not forget the intents of a file put back", exc_info=True)
        touch.intents = []
        if touch.state is not COMMITTED:  # (a signal between a commit and its forget: nothing to put back)
            touch.to(UNDONE)
        return None

    def _restore(self, touch: Touch) -> None:
        """The file where the library says, with the library's values of the
        fields the plan changed. If the library cannot be read, it said
        ``touch.row`` when we read it."""
        item = touch.item
        if touch.dest is not None and not touch.moved:  # interrupted somewhere in its move
            if located(touch.src, touch.dest, self.log) == "dst":
                item.path, touch.moved = touch.dest, True
        try:
            found = stored.read(self.lib, touch.id)
        except sqlite3.Error:
            found = None
        fresh = found[1] if found is not None else None
        where = fresh.path if fresh is not None else touch.src
        if touch.linked:
            self._unlink(touch, where)
        if touch.moved and not util.samefile(item.path, where):
            if where != touch.src:
                raise ItemError(f"the library now says {util.displayable_path(where)} (another program "
                                "changed it); the file stays where it is")
            self._move_back(touch)
        if touch.wrote:
            # A write not reported done (a helper killed, Ctrl-C in the write) may have torn the
            # file: its bytes come back from the write's backup, in place; then the backup goes.
            settle_backups(touch.src, self.journal.spare, complete=touch.write_known)
            touch.backup = None
            for place in {touch.src, item.path}:  # (an older release's temp copy, a moved file's)
                remove_stale_temps(place)
            model = fresh if fresh is not None else stored.model(self.lib, touch.row)
            changes = self._media_changes(touch.changes)
            put_back_fields(item.path, changes, {key: model.get(key) for key in changes}, self.id3v23)
            touch.wrote = False

    def _unlink(self, touch: Touch, where: bytes) -> None:
        """The file has both names (moves.py): keep the one the library says
        (``where``), remove the other. If that cannot be done by removing a
        name (one of them is gone), the move is put back as a move."""
        item, src = touch.item, touch.src
        touch.linked = False
        if where == src and release(src, item.path):
            util.prune_dirs(os.path.dirname(item.path), self.lib.directory, clutter=self.clutter)
            item.path, touch.moved = src, False
            sync_dirs([os.path.dirname(touch.dest or src)])
        elif where == item.path:
            release(item.path, src)
            sync_dirs([os.path.dirname(src)])
        elif where == src and os.path.exists(util.syspath(src)) and not os.path.exists(util.syspath(item.path)):
            item.path, touch.moved = src, False  # (the new name was removed by someone else)

    def _move_back(self, touch: Touch) -> None:
        item, src = touch.item, touch.src
        dst = item.path
        if os.path.exists(util.syspath(src)):
            raise ItemError(f"cannot move {util.displayable_path(dst)} back: "
                            f"{util.displayable_path(src)} is taken")
        util.mkdirall(src)
        try:  # killed mid-copy, the next run's repair removes the partial copy at src
            reverse = self.journal.intend_many([(ITEM, touch.id, dst, src)])
        except RunAborted:  # the journal is what failed: move back all the same
            reverse = []
        try:
            move_exactly(item, src)
        except BaseException:
            where = located(dst, src, self.log)
            if where != "dst":
                if where == "src":  # still at dst, intact, no partial copy: the first intent says it all
                    with suppress(RunAborted):
                        self.journal.forget(reverse)
                raise
            item.path = src  # it went back after all (the error came later)
        touch.moved = False
        util.prune_dirs(os.path.dirname(dst), self.lib.directory, clutter=self.clutter)
        with suppress(RunAborted):
            self.journal.forget(reverse)


def move_exactly(item: Item, dest: bytes) -> None:
    """``Item.move_file`` to exactly ``dest`` (a file already there is an
    error, not a renamed destination): the same plugin events, beets'
    ``util.move`` (a rename, or a copy and delete across filesystems)."""
    source = item.path
    plugins.send("before_item_moved", item=item, source=source, destination=dest)
    util.move(source, dest)
    plugins.send("item_moved", item=item, source=source, destination=dest)
    set_field(item, "path", dest)


def located(src: bytes, dst: bytes, log: BeetsLogger, exc: BaseException | None = None) -> str | None:
    """Where the file is after a move from ``src`` to ``dst`` raised (or was
    interrupted): ``"src"`` or ``"dst"``, with no partial copy left and never
    both; ``None`` if that could not be made so."""
    try:
        return where_after_failed_move(src, dst, exc)
    except OSError as problem:
        log.warning("could not tell where {} went after an interrupted move: {}", util.displayable_path(src), problem)
        return None


def why(exc: BaseException, lib: Library, commit_attempts: int) -> str:
    """What stopped a run, in words."""
    if isinstance(exc, LibraryLockedError):
        return (f"the library {util.displayable_path(lib.path)} stayed locked by another process past "
                f"{commit_attempts} attempts (each waits beets' 'timeout' of {lib.timeout:g} s)")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, Terminated):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        return f"the library {util.displayable_path(lib.path)} failed: {exc}"
    if not isinstance(exc, Exception):
        return f"stopped ({type(exc).__name__})"
    return str(exc) or type(exc).__name__
