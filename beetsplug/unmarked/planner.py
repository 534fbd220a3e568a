"""Each item's plan, worked out before anything is touched.

For every item of a wave the planner reads its row (all in one query), and
works out what the operation will change: the rules' field changes
``{field: [old, new]}`` and, for a rename, the destination (beets' path
formats, ``replace``, unique names, and no name promised to another item of
the batch). Planning reads; it journals nothing and changes no file. The
executor (executor.py) applies the plans, the commit (commit.py) records
them, and a failed item's reason is worked out here when the plan already
shows it (file missing, no destination).
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING, Any

from beets import util
from beets.dbcore.query import PathQuery
from beets.library import Item

from . import layout, markers, stored
from .batch import ItemError, Touch, describe
from .beets_compat import listens, media_fields, path_format_chooser
from .errors import RunAborted
from .moves import same_file, second_name
from .operations import RENAMED
from .results import ItemResult, readable
from .reversal import AS_BEFORE, CHANGED, UNDONE_MARKERS

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.library import Album, Library
    from beets.logging import BeetsLogger

    from .batch import Batch
    from .journal import Unreported
    from .normalize import Rules
    from .operations import Operation
    from .reversal import Reversal
    from .stored import Row


def unique_destination(dest: bytes, taken: set[bytes]) -> bytes:
    """beets' ``util.unique_path``, also steering clear of paths promised earlier
    in this batch (two items with the same destination, neither moved yet)."""
    candidate = util.unique_path(dest)
    if candidate not in taken:
        return candidate
    base, ext = os.path.splitext(dest)
    number = 0
    while candidate in taken:
        number += 1
        candidate = util.unique_path(base + b".%d" % number + ext)
    return candidate


class Planner:
    """Plans for one run's items (construct per run)."""

    def __init__(self, lib: Library, op: Operation, rules: Rules, *, force: bool, pretend: bool,
                 log: BeetsLogger, reversal: Reversal | None = None) -> None:
        self.lib, self.op, self.rules, self.force, self.pretend, self.log = lib, op, rules, force, pretend, log
        # An undo (reversal.py): each item's plan is its record's, reversed; no marker is set, the old ones come back.
        self.reversal = reversal
        self.markers = op.markers if reversal is None else ()
        self._left: set[bytes] = set()  # an undo: names its items leave (``_place_back``)
        self.unreported: dict[int, Unreported] = {}  # resuming: items the stopped run committed, unreported
        self._chooser: Callable[[Item], bytes] | None = None  # path formats, parsed once (in the run)
        self.free: Callable[[bytes], bool] = lambda path: False  # removes an old name the run holds (executor)
        self._media_fields = media_fields()
        # Only the changed fields are written, unless a plugin edits the tags
        # beets passes with its ``write`` event (zero, scrub, ...): then every field.
        self._whole_writes = listens("write")
        # The path configuration this run works under: its ``renamed`` markers
        # carry it, and a marker made under another one does not count as done.
        self.layout = layout.fingerprint()

    # --- reading --------------------------------------------------------------

    def read(self, ids: Sequence[int], batch: Batch) -> dict[int, Row]:
        """The wave's rows, and their albums' rows the first time the batch
        meets them, in one read transaction; the library's ``data_version``
        before them (a commit in between shows up at the batch's commit)."""
        with self.lib.transaction() as tx:
            batch.versions.add(stored.data_version(tx))
            rows = stored.rows(tx, ids)
            if not self.pretend:
                albums = {album for row in rows.values()
                          if (album := stored.album_of(row)) is not None and album not in batch.album_rows}
                batch.album_rows.update(stored.rows(tx, sorted(albums), stored.ALBUM_TABLES))
        return rows

    def begin(self, item_id: int, raw: Row | None, batch: Batch) -> Touch | ItemResult:
        """An item as read: skipped, or a touch with its changes planned
        (failed already if its file is gone)."""
        if raw is None and self.reversal is not None:
            return ItemResult(item_id, None, success=False, error=f"changed since job {self.reversal.job}: "
                                                                  f"item {item_id} was removed from the library")
        if raw is None:
            return ItemResult(item_id, None, skipped=True, error="removed from the library during the run")
        item = stored.model(self.lib, raw)
        path = item.path
        file = readable(path)
        if self.reversal is not None:
            return self._begin_undo(item_id, item, raw, batch)
        committed = self.unreported.get(item_id)
        if committed is not None and stored.marked_at(raw[2], self.markers, committed.time):
            return ItemResult.committed(item_id, committed.result, file)  # by the run this one resumes, unreported
        done = all(markers.holds(raw[2], marker, self.layout) for marker in self.markers)  # as ``unmarked:`` selects
        if done and not self.force:
            return ItemResult(item_id, file, file, skipped=True, error="already done by another run")
        touch = Touch(item_id, item, raw, path, file, before=item.copy() if self.pretend else None,
                      markers_before={key: raw[2].get(key) for key in UNDONE_MARKERS})
        if not self.pretend:
            batch.touches.append(touch)
        try:
            if not os.path.exists(util.syspath(path)):
                raise ItemError(f"file not found: {file}")
            if self.op.normalize:
                touch.changes = self.normalize(item, stored.filled(raw))
        except (RunAborted, sqlite3.Error):
            raise
        except Exception as exc:
            self.fail(touch, exc)
        return touch

    def _begin_undo(self, item_id: int, item: Item, raw: Row, batch: Batch) -> Touch | ItemResult:
        """An item of an undo: put back if it is as the job left it (its plan
        reversed: the fields the job changed, its path), skipped if it is as
        the job found it already, else left alone and reported."""
        assert self.reversal is not None
        job, plan, file = self.reversal.job, self.reversal.items[item_id], readable(item.path)
        if plan is None:
            return ItemResult(item_id, file, success=False, error=(
                f"{file}: job {job} did not record what it changed here (its run stopped between the commit and "
                "the report; the run that resumed it reported the item done); left as it is"))
        state, what = plan.state(item)
        committed = self.unreported.get(item_id)
        if state == AS_BEFORE and committed is not None:  # undone by the run this one resumes, unreported
            return ItemResult.committed(item_id, committed.result, file)
        if state == AS_BEFORE:
            return ItemResult(item_id, file, file, skipped=True, error=f"already as before job {job}")
        if state == CHANGED:
            return ItemResult(item_id, file, success=False,
                              error=f"changed since job {job}: {item.title} ({file}: {what}); left as it is")
        touch = Touch(item_id, item, raw, item.path, file, before=item.copy() if self.pretend else None,
                      markers_before={key: raw[2].get(key) for key in UNDONE_MARKERS})
        if not self.pretend:
            batch.touches.append(touch)
        if not os.path.exists(util.syspath(item.path)):
            self.fail(touch, ItemError(f"file not found: {file}"))
            return touch
        touch.changes = plan.apply(item)
        return touch

    def fail(self, touch: Touch, exc: Exception) -> None:
        touch.fail(describe(exc, touch.file, self.log))

    def succeed(self, touch: Touch) -> None:
        plan = self.reversal.items[touch.id] if self.reversal is not None else None
        if plan is not None:  # an undo: the markers as before the job, stored with the item
            plan.restore_markers(touch.item)
        touch.succeed(self.markers, self.pretend)

    # --- tags -------------------------------------------------------------------

    def normalize(self, model: Item | Album, present: set[str] | None = None) -> dict[str, list[Any]]:
        """Apply the rules to the fields the model has (``present``: those, or
        fewer that include every non-empty one - the rules leave empty ones be)."""
        if not self.op.normalize:
            return {}
        if present is None:
            present = set(model.keys(with_album=False)) if isinstance(model, Item) else set(model.keys())
        return self.rules.apply(model, present)

    def normalized_albums(self, ids: Sequence[int]) -> dict[Album, dict[str, list[Any]]]:
        """The albums of these items whose fields the rules changed (in
        memory), with their changes."""
        if not self.op.normalize or self.reversal is not None:
            return {}
        with self.lib.transaction() as tx:
            album_ids = sorted({row[0] for part in stored.parts(ids) for row in tx.query(
                "SELECT DISTINCT album_id FROM items WHERE album_id IS NOT NULL "
                f"AND id IN ({stored.marks(part)})", part)})
        found = {}
        for album in map(self.lib.get_album, album_ids):
            if album is not None and (changes := self.normalize(album)):
                found[album] = changes
        return found

    def media_changes(self, changes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """The changes that reach the file (fields mediafile writes): what a tag write's intent records."""
        return {key: change for key, change in changes.items() if key in self._media_fields}

    def expected_tags(self, touch: Touch) -> dict[str, Any] | None:
        """An undo's tag write: what the file must hold before it (what the
        job wrote), so that tags another tool wrote since are never written over."""
        if self.reversal is None:
            return None
        return {key: now for key, (now, _) in touch.changes.items() if key in self._media_fields}

    def tags(self, item: Item, changes: dict[str, list[Any]]) -> dict[str, Any] | None:
        """What the item's tag write writes: the changed fields ``Item.write``
        writes, with their new values (None: no write). When a plugin edits
        tags on beets' ``write`` event (zero, scrub, ...), every field, as
        beets' whole ``Item.write`` gives it: the plugin may edit any of them."""
        if not changes:
            return None
        if self._whole_writes and self.reversal is None:  # (an undo writes back only what its job changed)
            return {key: value for key, value in dict(item).items() if key in self._media_fields}
        return {key: item[key] for key in changes if key in self._media_fields} or None

    # --- paths --------------------------------------------------------------------

    def destination(self, item: Item) -> bytes:
        """``item.destination()``, with the path formats' queries parsed once
        (an undo: where the job found the file)."""
        if self.reversal is not None:
            plan = self.reversal.items[int(item.id or 0)]
            assert plan is not None  # (an item without a plan is never begun: ``_begin_undo``)
            return plan.src
        if self._chooser is None:
            self._chooser = path_format_chooser(self.lib)
        return self._chooser(item)

    def place(self, touch: Touch, batch: Batch, found: bytes | None = None) -> bytes | None:
        """Where the item's file goes (a name no other file has or is promised),
        or None if it is there already. ``found``: its destination, computed
        by the helper."""
        dest = found if found is not None else self.destination(touch.item)
        # beets' ``samefile(dest, src)`` (the file, not moved yet, is at
        # ``src``), then ``unique_path``; both only look further when ``dest``
        # exists, so one stat answers the usual case: free, and not the file.
        if dest == touch.src:
            return None
        if self.reversal is not None:
            return self._place_back(touch, batch, dest)
        if os.path.exists(util.syspath(dest)) and not self.free(dest):
            if util.samefile(dest, touch.src) and not second_name(touch.src, dest):
                return None
            if second_name(touch.src, dest) or self._own_copy(touch.src, dest):
                batch.taken.add(dest)
                batch.adopted.add(dest)
                return dest  # left by a move cut short (moves.py): taken as placed, the source goes
            dest = unique_destination(dest, batch.taken)
        elif dest in batch.taken:
            dest = unique_destination(dest, batch.taken)
        batch.taken.add(dest)
        return dest

    def _place_back(self, touch: Touch, batch: Batch, dest: bytes) -> bytes:
        """An undo's move goes exactly where the job found the file: a name
        another file holds (or another item of the batch goes to) is this
        item's failure, never a unique name beside it."""
        freed = self.pretend and dest in self._left  # (a real run frees it: ``free``)
        if dest in batch.taken or (os.path.lexists(util.syspath(dest)) and not freed and not self.free(dest)
                                   and not second_name(touch.src, dest)):
            raise ItemError(f"{touch.file}: cannot move it back to {readable(dest)}: another file is there")
        if os.path.lexists(util.syspath(dest)) and not freed:
            batch.adopted.add(dest)  # its own second name, left by a move back cut short (moves.py)
        batch.taken.add(dest)
        self._left.add(touch.src)
        return dest

    def _own_copy(self, src: bytes, dest: bytes) -> bool:
        """``dest`` holds exactly the bytes of ``src`` and no item names it: a
        copy across filesystems that a move cut short left at the item's
        destination, its journal entry lost with a job store moved aside
        (README). Taken as placed: nothing is lost either way, where a
        unique name (``.1``) would leave the copy behind for good."""
        if self.lib.items(PathQuery("path", dest)).get() is not None:
            return False
        return same_file(src, dest)

    def find(self, touch: Touch, found: dict[int, bytes | ItemError]) -> None:
        """The touch's destination, or the error computing it, into ``found``."""
        try:
            found[touch.id] = self.destination(touch.item)
        except (RunAborted, sqlite3.Error):
            raise
        except Exception as exc:
            found[touch.id] = ItemError(readable(describe(exc, touch.file, self.log)))

    def keep_renamed_honest(self, item: Item) -> bool:
        """``renamed`` promises the file is at its destination. Normalizing can
        change the fields the path format uses; an item it leaves in place
        whose destination changed loses ``renamed`` (cleared, in the same
        commit, not moved: normalize stays a tags-only operation, and the
        next rename-unmarked moves it), with its fingerprint. Returns whether it was cleared."""
        if self.reversal is not None:  # an undo restores the markers as they were
            return False
        if item.get(RENAMED, with_album=False) is None or util.samefile(self.destination(item), item.path):
            return False
        del item[RENAMED]
        if item.get(layout.LAYOUT, with_album=False) is not None:
            del item[layout.LAYOUT]
        return True
