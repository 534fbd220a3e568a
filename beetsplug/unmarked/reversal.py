"""Undoing a job: each item it changed, put back as the job found it.

A job's record keeps, for every item it did, its plan as carried out: the
path before and after (``file``/``dest`` of the item event; the exact bytes
in ``undo.src``/``undo.dest`` when those cannot spell them), each field's
value before and after (``changes``), and the item's markers before the job
(``undo.markers``). An undo is a job like the others, op ``undo``, run by the
same engine: its planner takes each item's plan from this record instead of
from the rules and the path formats (``Planner`` with a ``Reversal``), and
everything else - journal, helper, batches, commit, the undo of an
interrupted batch, reports - is the engine's as for any job. Its own record
is kept the same way, so an undo can itself be undone (which redoes the job).

An item is put back only if it is still as the job left it: its path and
every field the job changed hold what the job wrote. Otherwise someone
changed it since (or it was removed), and it is left alone and reported:
"changed since job N". An item already as the job found it (an undo
resumed after a stop, or run twice) is skipped. Only the fields the job
changed are written back, in the library and in the file: tags other tools
wrote since stay. The album fields the job changed (its record's
``album_changes``) are put back at the end of an undo that went through,
where they still hold what the job wrote.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .journal import ALBUM, PATH_FIELD
from .layout import LAYOUT
from .operations import NORMALIZED, RENAMED, Operation

if TYPE_CHECKING:
    from beets.library import Album, Item, Library

    from .jobs import JobStore

UNDO = Operation("undo", normalize=True, rename=True)  # (not in OPERATIONS: an undo is asked for by job)
UNDONE_MARKERS = (NORMALIZED, RENAMED, LAYOUT)  # what an item event's ``undo.markers`` holds
ART = PATH_FIELD[ALBUM]  # an art move, in a job's album changes (paths as text: ``os.fsdecode``)

AS_LEFT, AS_BEFORE, CHANGED = "as left", "as before", "changed"


class NotUndoable(Exception):
    """The job cannot be undone; the message says why."""


def _plain(value: Any) -> Any:
    """A value as the record holds it (JSON): compared with the record's."""
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class Reverse:
    """One item's plan as the job carried it out."""

    item_id: int
    src: bytes  # where the job found the file: where it goes back
    dest: bytes  # where the job left it
    changes: dict[str, list[Any]]  # field -> [before the job, after it]
    markers: dict[str, Any]  # the item's markers before the job (None: absent)
    after: dict[str, Any] | None = None  # and as the job left them (None: not recorded)

    def state(self, item: Item) -> tuple[str, str]:
        """Whether the item is as the job left it, as it found it, or changed
        since; and, if changed, what. "As left" allows fields already back
        to their old values (an undo whose move back failed after its tag
        write was recorded: the next undo finishes it); a plan that changed
        only markers is "as left" while the item holds the markers the job gave."""
        now = {key: _plain(item.get(key, with_album=False)) for key in self.changes}
        if item.path == self.dest and all(now[key] in (old, new) for key, (old, new) in self.changes.items()):
            moved_or_changed = self.src != self.dest or any(now[k] != old for k, (old, _) in self.changes.items())
            if moved_or_changed or (not self._markers_as(item, self.markers) and self._markers_as(item, self.after)):
                return AS_LEFT, ""
        if item.path == self.src and all(now[key] == old for key, (old, _) in self.changes.items()) \
                and self._markers_as(item, self.markers):
            return AS_BEFORE, ""
        if item.path != self.dest:
            return CHANGED, "moved since"
        edited = [key for key, (old, new) in self.changes.items() if now[key] not in (old, new)]
        return CHANGED, f"{', '.join(edited) or 'its markers'} edited since"

    @staticmethod
    def _markers_as(item: Item, markers: dict[str, Any] | None) -> bool:
        """The item's markers hold these values (None: absent); no record of them: yes."""
        if markers is None:
            return True
        flex = {key: item.get(key, with_album=False) for key in markers}
        return all((flex[key] is None) == (value is None) and (value is None or _same(flex[key], value))
                   for key, value in markers.items())

    def apply(self, item: Item) -> dict[str, list[Any]]:
        """Set the fields the job changed back (in memory); the changes this
        makes (none for a field already back)."""
        changes = {}
        for key, (old, _) in self.changes.items():
            now = _plain(item.get(key, with_album=False))
            if now != old:
                changes[key] = [now, old]
                item[key] = old
        return changes

    def restore_markers(self, item: Item) -> None:
        """The markers as they were before the job (absent if they were absent)."""
        for key, value in self.markers.items():
            if value is not None:
                item[key] = value
            elif key in item.keys(with_album=False):
                del item[key]


def _same(now: Any, recorded: Any) -> bool:
    try:
        return abs(float(now) - float(recorded)) < 0.001
    except (TypeError, ValueError):
        return str(now) == str(recorded)


@dataclass
class Reversal:
    """The plans of a job's items, by item id, and the album fields it
    changed, by album id: what an undo of it puts back."""

    job: int
    items: dict[int, Reverse | None]  # None: the job did it, but its record does not say how (see reversal_of)
    albums: dict[int, dict[str, list[Any]]] = field(default_factory=dict)

    def art_back(self, album: Album, src: bytes) -> bytes:
        """Where an album's art goes in an undo: where the job found it, if
        the job moved it and it is still where the job put it; else nowhere."""
        moved = self.albums.get(int(album.id or 0), {}).get(ART)
        if moved is None or os.fsencode(moved[1]) != src:
            return src
        return os.fsencode(moved[0])

    def order(self) -> list[int]:
        """The items to undo, the last one the job did first: a name one item
        left and a later one took is free again before the first comes back."""
        return list(reversed(self.items))

    def albums_back(self, lib: Library) -> dict[Album, dict[str, list[Any]]]:
        """The albums whose fields still hold what the job wrote, set back (in
        memory), with the changes that makes; an album edited since, or
        removed, or with an item of the job's not back as before (left alone
        as changed since, say), is left as it is: the album row agrees with
        its items either way."""
        back = {}
        for album_id, recorded in sorted(self.albums.items()):
            changes = {key: change for key, change in recorded.items() if key != ART}  # (the art: ``art_back``)
            album = lib.get_album(album_id)
            if not changes or album is None:
                continue
            if any(_plain(album.get(key)) != new for key, (_, new) in changes.items()):
                continue
            plans = [(item, plan) for item in album.items() if (plan := self.items.get(int(item.id or 0)))]
            if any(plan.state(item)[0] != AS_BEFORE for item, plan in plans):
                continue
            for key, (old, _) in changes.items():
                album[key] = old
            back[album] = {key: [new, old] for key, (old, new) in changes.items()}
        return back


def reversal_of(store: JobStore, job: int) -> Reversal:
    """What undoing ``job`` puts back, from its record; ``NotUndoable`` says why not."""
    summary = store.get(job)
    if summary is None:
        raise NotUndoable(f"no job {job}")
    if summary["status"] in ("queued", "running"):
        raise NotUndoable(f"job {job} is still {summary['status']}; undo it once it has ended")
    if summary["compacted"]:
        raise NotUndoable(
            f"job {job} can no longer be undone: its record was compacted to its failed items to keep the job "
            "store within `job_history_mb` (raise it to keep more jobs undoable)")
    items: dict[int, Reverse | None] = {}
    for event in store.item_record(job):
        if event.get("skipped") or not event.get("success"):
            continue
        items.pop(event["item_id"], None)  # (reported again by a resumed run: its last report, in its place)
        record = event.get("undo")
        if record is None:  # committed by a run that stopped before it reported them, reported by its resumption
            items[event["item_id"]] = None
            continue
        src = os.fsencode(record.get("src", event["file"]))
        dest = os.fsencode(record.get("dest", event["dest"] or event["file"]))
        items[event["item_id"]] = Reverse(event["item_id"], src, dest, event.get("changes") or {},
                                          record["markers"], record.get("after"))
    if items and all(plan is None for plan in items.values()):
        raise NotUndoable(f"job {job} was recorded by an older release, which kept no undo record")
    albums = store.album_changes(job)
    if not items and not albums:
        raise NotUndoable(f"job {job} changed nothing that could be undone (no item of it succeeded)")
    return Reversal(job, items, albums)
