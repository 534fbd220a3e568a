"""The executor: applies the planned file work through a worker, one path for every item.

For each wave, ``hand_out`` gives every item with file work a unique
destination, journals its tag write (with the fields' old and new values)
and its move in one transaction, sends beets' ``write`` and
``before_item_moved`` events, then hands the tasks to the run's worker
(workers.py: this process, or the helper process). ``apply_files`` applies
each report: the item is done (``after_write``, ``item_moved``), failed
(the file where the report says), or untried (the worker stopped first).
Nothing else in the engine touches an item's file, so a newcomer reads one
path for what happens to it (states.py lists its states).

With the helper, a rename's destinations are computed there too
(``ask_destinations``); ``destinations_found`` takes back those it has not
begun rather than wait for them (``Helper.steal``).
"""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections import deque
from typing import TYPE_CHECKING, Any

from beets import plugins, util

from . import helper as helpers
from .batch import Handed, ItemError, Touch
from .beets_compat import listens, set_field
from .errors import ClaimLost, RunAborted
from .journal import ITEM, tags_entry
from .moves import Leftovers, release, sync_dirs
from .results import readable
from .signals import signals_deferred
from .states import HANDED, UNTRIED
from .workers import FileDone, FileTask, InProcess, Reply, Worker

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from beets.library import Item, Library
    from beets.logging import BeetsLogger

    from .batch import Batch, Wave
    from .claim import LibraryLock
    from .journal import Journal, NoJournal
    from .operations import Operation
    from .planner import Planner

# The helper process (helper.py) takes a run's tag writes and moves, and a
# share of a rename's destinations, when it has at least this many items and
# no plugin listens to the events of that work (they would run in the helper).
HELPER_MIN_ITEMS = 4
HANDED_EVENTS = ("write", "after_write", "before_item_moved", "item_moved")


class Executor:
    """The run's worker and the file work handed to it (construct per run)."""

    def __init__(self, lib: Library, op: Operation, planner: Planner, journal: Journal | NoJournal, *,
                 guard: Callable[[], None], log: BeetsLogger, claim: LibraryLock | None, id3v23: bool,
                 clutter: Sequence[str] = ()) -> None:
        self.lib, self.op, self.planner, self.journal = lib, op, planner, journal
        self.guard, self.log, self.claim, self.id3v23, self.clutter = guard, log, claim, id3v23, clutter
        planner.free = self.free  # a destination that is an old name this run holds is freed, not renamed around
        self.cancelled: Callable[[], bool] = lambda: False  # the run's cancel flag: asked while a wait is long
        self.helper: helpers.Helper | None = None  # the helper process, if the run has one (its worker)
        self._worker: Worker | None = None
        self._handed: dict[int, Handed] = {}  # by the key of its task
        self._keys = itertools.count()
        self._found: deque[list[Any]] = deque()  # the helper's destinations, not yet taken by their wave
        self._made: set[bytes] = set()  # directories this run has made or found (until the next prune)
        self._leftovers = Leftovers()
        self._releases: dict[bytes, tuple[bytes, int]] = {}  # old name -> (new path, move intent): ``committed``

    # --- the worker ---------------------------------------------------------------

    def start(self, count: int) -> None:
        """The run's worker: the helper process if this run can use one (see helper.py), else this process."""
        if (count < HELPER_MIN_ITEMS or not helpers.available(self.claim)
                or any(listens(event) for event in HANDED_EVENTS)):
            self._worker = InProcess(self.guard, self.id3v23)
            return
        assert self.claim is not None
        self.guard()
        self.helper = helpers.Helper(self.lib, self.claim, self.id3v23, shield=signals_deferred)
        self._worker = self.helper
        self.log.debug("helper process {} takes this run's {}", self.helper.pid,
                       "tag writes and moves" if self.op.normalize else "file work and a share of destinations")

    def end(self) -> None:
        worker, self._worker, self.helper = self._worker, None, None
        if worker is not None:
            worker.close()

    def stop(self) -> None:
        """The run is ending early: the worker stops after the item in hand and
        reports; the undo then knows what was done. Unanswered (a helper killed,
        a task cut by Ctrl-C): the handed-out items count as maybe written,
        maybe moved, and the undo finds out from the files."""
        worker, self._worker, self.helper = self._worker, None, None
        if worker is None:
            return
        for kind, reports in worker.stop() or []:
            self._apply(kind, reports, stopping=True)
        for handed in self._handed.values():  # never answered: the undo finds out
            self.log.debug("no report for the file work of item {}", handed.touch.id)
        self._handed.clear()

    @property
    def lag(self) -> int:
        """Requests the worker may be behind by: the helper two, this process none."""
        return 2 if self.helper is not None else 0

    def drain(self, open_at_most: int = 0) -> None:
        """Settle the worker's reports until at most ``open_at_most`` requests are open."""
        while self._worker is not None and self._worker.busy > open_at_most:
            self._apply(*self._receive())

    def drain_files(self) -> None:
        """Settle the worker's reports until no file work is out (a request
        for destinations sent after the last one may stay open)."""
        while self._worker is not None and self._worker.awaits("files"):
            self._apply(*self._receive())

    def _receive(self) -> Reply:
        assert self._worker is not None
        return self._worker.receive(cancelled=self.cancelled)

    def _apply(self, kind: str, reports: list[Any], stopping: bool = False) -> None:
        """Apply the worker's reports; a lost claim ends the run after all of them are applied."""
        if kind == "destinations":  # for the wave that asked: kept until it finishes
            self._found.append(reports)
            return
        lost = None
        for report in reports:
            lost = self.apply_files(report) or lost
        if lost is not None and not stopping:
            raise ClaimLost(lost)

    # --- destinations the helper computes -------------------------------------------

    def ask_destinations(self, wave: Wave) -> None:
        """A rename wave's destinations, asked of the helper; taken on the next turn."""
        assert self.helper is not None
        wave.asked = len(wave.touches)
        if wave.asked:
            wave.slot = self.helper.send_destinations(
                [(t.id, t.row, {key: new for key, (_, new) in t.changes.items()}) for t in wave.touches])

    def destinations_found(self, wave: Wave, art_moved: set[int]) -> dict[int, bytes | ItemError]:
        """A rename wave's destinations, asked of the helper when the wave
        began: those it has not begun yet are computed here, from the last one
        back, rather than waited for; the rest come with its answer. Items of
        albums whose art the last commit moved (``art_moved``) are computed
        again if the wave was begun before that commit."""
        assert self.helper is not None
        found: dict[int, bytes | ItemError] = {}
        while (index := self.helper.steal(wave.slot)) is not None:
            self.planner.find(wave.touches[index], found)
        while not self._found:  # replies come in order: any files reports before it are applied
            self._apply(*self._receive())
        reports = self._found.popleft()
        files = {touch.id: touch.file for touch in wave.touches}
        for report in reports:
            if report.key in found:  # both took it (a race the counters allow): this process's answer stands
                continue
            found[report.key] = (report.dest if report.error is None
                                 else ItemError(readable(report.error.replace("{file}", files[report.key]))))
        if wave.early and art_moved:
            for touch in wave.touches:
                if touch.item.album_id in art_moved:
                    self.planner.find(touch, found)
        return found

    def drop_early(self, wave: Wave) -> None:
        """Forget a wave begun ahead of its batch (the run stops before it):
        the helper's answer for it is read and dropped."""
        if wave.asked:
            while not self._found:
                self._apply(*self._receive())
            self._found.popleft()

    # --- file work ------------------------------------------------------------------

    def hand_out(self, touches: Sequence[Touch], batch: Batch, found: dict[int, bytes | ItemError]) -> None:
        """Give the wave's file work to the worker: destinations (``found``:
        those the helper computed) and unique names here, every tag write and
        move journaled (one transaction), beets' ``write`` and
        ``before_item_moved`` events sent, then the tasks; the reports are
        applied per item (``apply_files``), with ``after_write`` and ``item_moved``."""
        assert self._worker is not None
        plans = [handed for touch in touches if (handed := self._plan(touch, batch, found)) is not None]
        if not plans:
            return
        if self.helper is not None:  # (in this process, the worker asks before each file)
            self.guard()
        # The files are where they were read (``src`` is ``item.path`` until a move is reported).
        spare = self.journal.spare  # where a write's backup goes if the file's directory refuses it
        entries = [entry for h in plans for entry in (
            [tags_entry(h.touch.id, h.touch.src, self.planner.media_changes(h.touch.changes), spare)]
            if h.tags else []) + (
            [(ITEM, h.touch.id, h.touch.src, h.dest)] if h.dest is not None else [])]
        with signals_deferred():  # a stop between the journal's commit and this would leave intents no touch holds
            intents = iter(self.journal.intend_many(entries))
            for handed in plans:
                handed.touch.to(HANDED)  # from its first intent on, a stop puts it back (it finds out from the file)
                if handed.tags:
                    handed.tags_intent = next(intents)
                    handed.touch.intents.append(handed.tags_intent)
                if handed.dest is not None:
                    handed.move_intent = next(intents)
                    handed.touch.intents.append(handed.move_intent)
        tasks = []
        for handed in plans:
            touch, item = handed.touch, handed.touch.item
            if handed.tags:
                plugins.send("write", item=item, path=touch.src, tags=handed.tags)
                touch.wrote = True  # maybe, until the report says
            if handed.dest is not None:
                touch.dest = handed.dest  # maybe moved, until the report says
                plugins.send("before_item_moved", item=item, source=touch.src, destination=handed.dest)
            key = next(self._keys)
            self._handed[key] = handed
            tasks.append(FileTask(key, touch.src, handed.tags, handed.dest, adopt=handed.dest in batch.adopted,
                                  spare=spare if handed.tags else None,
                                  expect=self.planner.expected_tags(touch) if handed.tags else None))
        self._worker.send_files(tasks)

    def _plan(self, touch: Touch, batch: Batch, found: dict[int, bytes | ItemError]) -> Handed | None:
        """The touch's file work (its destination placed), or None: failed, or nothing to do to its file."""
        tags = self.planner.tags(touch.item, touch.changes)
        try:
            known = found.get(touch.id)
            if isinstance(known, ItemError):
                raise known
            dest = self.planner.place(touch, batch, known) if self.op.rename else None
            if dest is not None:
                self._make_dirs(dest, batch)
                self._leftovers.clear(dest)
        except (RunAborted, sqlite3.Error):
            raise
        except Exception as exc:
            self.planner.fail(touch, exc)
            return None
        if not tags and dest is None:
            self.planner.succeed(touch)  # nothing to do to its file
            return None
        return Handed(touch, batch, tags, dest)

    def apply_files(self, done: FileDone) -> str | None:
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
                self.journal.forget(touch.intents)
                touch.intents = []
                self.planner.fail(touch, ItemError(done.write_error))
                return None
            touch.write_known, touch.backup = True, done.backup
            if done.warning is not None:
                self.log.warning("{}", done.warning)
            if done.mtime is not None:
                set_field(item, "mtime", done.mtime)
            plugins.send("after_write", item=item, path=touch.src)
        if handed.dest is not None and handed.move_intent is not None:
            self._apply_move(handed, done)
            if done.move_error is not None:
                self.planner.fail(touch, ItemError(done.move_error))
                return None
        self.planner.succeed(touch)
        return None

    def _apply_move(self, handed: Handed, done: FileDone) -> None:
        touch, item, intent = handed.touch, handed.touch.item, handed.move_intent
        assert handed.dest is not None
        assert intent is not None
        if done.where in ("dst", "both"):
            set_field(item, "path", handed.dest)
            touch.moved, touch.linked = True, done.where == "both"
            touch.move_intent = intent
            handed.batch.placed.add(os.path.dirname(handed.dest))
            vacate(handed.batch, item, touch.src)
            plugins.send("item_moved", item=item, source=touch.src, destination=handed.dest)
        elif done.where == "src":
            self.journal.forget([intent])
            touch.intents.remove(intent)
            touch.dest = None
        else:  # unsure: left in the journal for the next run's repair
            touch.intents.remove(intent)

    def _make_dirs(self, dest: bytes, batch: Batch) -> None:
        """The destination's directory, made if missing; the parents of those
        made are synced with the batch (``placed``), so they survive a power
        cut the commit survives."""
        directory = os.path.dirname(dest)
        if directory not in self._made:
            missing = []
            while not os.path.isdir(util.syspath(directory)):  # (there, so are its parents: nothing to make)
                missing.append(directory)
                directory = os.path.dirname(directory)
            if missing:
                util.mkdirall(dest)
                batch.placed.update(os.path.dirname(made) for made in missing)
            self._made.add(os.path.dirname(dest))

    def pruned(self) -> None:
        """Directories were pruned: any this run made may be gone."""
        self._made.clear()

    # --- the old names of moved files (moves.py) --------------------------------------

    def committed(self, touches: Sequence[Touch]) -> None:
        """The library has these items' new paths: their old names are removed
        at the end of the run (``release_all``), not now. A `beet update`
        running beside the job read the library before this commit; until
        the run ends, the paths it read still exist, so it deletes nothing.
        The move's intent stays in the journal until the name is gone."""
        for touch in touches:
            if touch.linked and touch.move_intent is not None:
                self._releases[touch.src] = (touch.item.path, touch.move_intent)
                touch.intents.remove(touch.move_intent)
                touch.linked, touch.move_intent = False, None

    def free(self, path: bytes) -> bool:
        """``path`` is the old name of an item this run moved: remove it now
        (another item's destination); whether it was one."""
        held = self._releases.pop(path, None)
        if held is None:
            return False
        release(held[0], path)
        sync_dirs([os.path.dirname(path)])
        self.journal.forget([held[1]])
        return True

    def release_all(self) -> None:
        """Remove the old names of every file the run moved (see ``committed``);
        their directories are synced, then the journal forgets the moves and
        the emptied directories are pruned. Ctrl-C waits until it is done
        (unlinks: about a second for 20 000), so no old name is left behind
        by a stop that comes in the middle."""
        with signals_deferred():
            self._release_all()

    def _release_all(self) -> None:
        held, self._releases = self._releases, {}
        kept = []
        for old, (new, intent) in held.items():
            try:
                release(new, old)
            except OSError as exc:  # its intent stays: the next run's repair tries again
                self.log.warning("could not remove the old name {} of {}: {}", util.displayable_path(old),
                                 util.displayable_path(new), exc.strerror or exc)
                kept.append(intent)
        sync_dirs(os.path.dirname(old) for old in held)
        self.journal.forget([intent for _, intent in held.values() if intent not in kept])
        for directory in {os.path.dirname(old) for old in held}:
            util.prune_dirs(directory, self.lib.directory, clutter=self.clutter)
        self._made.clear()


def vacate(batch: Batch, item: Item, old: bytes) -> None:
    """The item's file left ``old``: its directory may be pruned after the
    commit, and its album's art follows it."""
    batch.vacated.add(os.path.dirname(old))
    if item.album_id:
        batch.albums.add(item.album_id)
