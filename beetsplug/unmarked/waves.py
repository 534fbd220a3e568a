"""Waves: a batch is filled a few dozen items at a time.

A wave's items are read in one query and planned (planner.py), then their
file work is journaled in one transaction and handed to the worker together
(executor.py). Waves are sized from the time items have taken so far, to end
the batch near ``batch_seconds``. With the helper process, a rename's wave
asks the helper for its destinations and is finished on the next turn, and
the next batch's first wave is begun while a batch commits (``look_ahead``).
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

from .batch import Batch, Touch, Wave
from .beets_compat import set_field
from .errors import RunAborted

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable, Sequence

    from .engine import Settings
    from .executor import Executor
    from .operations import Operation
    from .planner import Planner

# Waves are sized to end the batch near ``batch_seconds``; the first has this many items.
FIRST_WAVE, MAX_WAVE = 8, 64
# A rename whose destinations the helper computes takes larger waves: each
# wave costs a round trip to the helper and a journal transaction, and its
# files are moved while the next wave is read (with 64, the default batch of
# 200 was 64 + 64 + 64 + 8: ~8 % slower than 100 + 100 at 5 000 items).
MAX_SHARED_WAVE = 100


class Waves:
    """Fills one run's batches, wave by wave (construct per run)."""

    def __init__(self, op: Operation, settings: Settings, planner: Planner, executor: Executor, *,
                 pretend: bool) -> None:
        self.op, self.settings, self.planner, self.executor, self.pretend = op, settings, planner, executor, pretend
        self.per_item: float | None = None  # seconds an item takes, measured: sizes the waves
        self.art_moved: set[int] = set()  # albums whose art the last commit moved (their ``artpath`` changed)

    def fill(self, batch: Batch, queue: deque[int], stop: Callable[[], bool]) -> bool:
        """Begin waves from ``queue`` until the batch's time is up or the chunk
        ends; True if asked to stop (a wave begun ahead is dropped: none of its
        files was touched)."""
        early = batch.pending is not None and batch.pending.early
        while queue or early:
            early = False
            if stop():
                if batch.pending is not None and batch.pending.early:
                    self.drop_early(batch)
                return True
            if not queue:
                return False
            started = time.monotonic()
            ids_now = [queue.popleft() for _ in range(min(self.size(batch), len(queue)))]
            wave = self.begin(ids_now, batch)
            self.finish_pending(batch)  # the wave before, whose destinations the helper has had meanwhile
            if wave.asked:
                batch.pending = wave
            else:
                self.finish(wave, batch)
            self.executor.drain(open_at_most=self.executor.lag)
            spent = (time.monotonic() - started) / len(ids_now)
            self.per_item = spent if self.per_item is None else 0.7 * self.per_item + 0.3 * spent
            if time.monotonic() - batch.started >= self.settings.batch_seconds:
                return False
        return False

    def look_ahead(self, source: deque[int]) -> Batch | None:
        """Begin the next batch's first wave while this one commits, its
        destinations all asked of the helper (rename): the helper computes them
        while this process waits for the library's disk, sends events and
        prunes directories. Only rows are read and destinations computed; no
        file is touched and nothing journaled before the commit, so an abort
        has nothing more to undo. The rows are checked at the next batch's
        commit like any other (this batch's commit changes no other item).
        The one album field this run changes - ``artpath``, when art follows
        its items after the commit - is handled in ``destinations_found``."""
        if self.executor.helper is None or self.op.normalize or not source:
            return None
        batch = Batch()
        ids = [source.popleft() for _ in range(min(self.size(batch), len(source)))]
        wave = self.begin(ids, batch)
        wave.early = True
        if wave.touches:
            batch.pending = wave
        return batch

    def drop_early(self, batch: Batch) -> None:
        """Forget a wave begun ahead of its batch (the run stops before it):
        its items are left as not reached."""
        wave, batch.pending = batch.pending, None
        assert wave is not None
        self.executor.drop_early(wave)
        batch.outcomes, batch.touches = [], []

    def size(self, batch: Batch) -> int:
        """How many items the next wave takes: as many as fit in what is left
        of the batch's time, by the time items have taken so far."""
        left = self.settings.batch_seconds - (time.monotonic() - batch.started)
        if left <= 0:
            return 1
        if self.per_item is None:
            return FIRST_WAVE
        most = MAX_SHARED_WAVE if self.executor.helper is not None and not self.op.normalize else MAX_WAVE
        return max(1, int(min(most, left / max(self.per_item, 1e-9))))  # (no time bound: left is inf)

    def begin(self, ids: Sequence[int], batch: Batch) -> Wave:
        """Plan a few items, read from the library just now (not when their
        chunk began). With a helper, hand their file work out at once
        (process, normalize: the tag writes are its load), or ask it for their
        destinations (rename: the wave is finished on the next turn, while the
        helper works on these; what it has not begun by then is computed here)."""
        rows = self.planner.read(ids, batch)
        outcomes = [self.planner.begin(item_id, rows.get(item_id), batch) for item_id in ids]
        batch.outcomes += outcomes
        wave = Wave([touch for touch in outcomes if isinstance(touch, Touch) and touch.result is None])
        if self.executor.helper is not None and not self.op.normalize:
            self.executor.ask_destinations(wave)
        elif self.executor.helper is not None:
            self.executor.hand_out(wave.touches, batch, {})
            wave.touches = []
        return wave

    def finish(self, wave: Wave, batch: Batch) -> None:
        """Hand the wave's file work to the worker. An item's trouble is its
        own; anything that ends the run (claim lost, journal or library
        unusable) propagates, and the batch's touches say what to undo."""
        if self.pretend:
            self._pretend(wave.touches, batch)
        else:
            found = self.executor.destinations_found(wave, self.art_moved) if wave.asked else {}
            self.executor.hand_out(wave.touches, batch, found)

    def _pretend(self, touches: Sequence[Touch], batch: Batch) -> None:
        """--pretend: the item as the run would leave it, no file touched."""
        for touch in touches:
            try:
                dest = self.planner.place(touch, batch) if self.op.rename else None
            except (RunAborted, sqlite3.Error):
                raise
            except Exception as exc:
                self.planner.fail(touch, exc)
                continue
            if dest is not None:
                set_field(touch.item, "path", dest)
            self.planner.succeed(touch)

    def finish_pending(self, batch: Batch) -> None:
        wave, batch.pending = batch.pending, None
        if wave is not None:
            self.finish(wave, batch)

