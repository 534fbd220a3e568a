"""Crash-safe moves: an intent is recorded before a file moves and reconciled after a crash.

beets moves a file and then stores the new path. A process killed between the
two leaves an item pointing at a file that is no longer there. So before each
move the engine writes (entity, src, dst) to the job store, and forgets it
once the batch that stores the new path has committed. Whatever is left when
the next job claims the library belonged to a process that died, and
``reconcile`` settles it from what is on disk.
"""

from __future__ import annotations

import filecmp
import glob
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import beets
from beets import util

from .jobs import JobStore, Move
from .transaction import atomic

if TYPE_CHECKING:
    from beets.library import Album, Item, Library

PATH_FIELD = {"item": "path", "album": "artpath"}


def unique_destination(dest: bytes, taken: set[bytes]) -> bytes:
    """beets' ``util.unique_path``, also steering clear of paths promised earlier
    in this batch (two items with the same destination, neither moved yet)."""
    candidate = util.unique_path(dest)
    base, ext = os.path.splitext(dest)
    number = 0
    while candidate in taken:
        number += 1
        candidate = util.unique_path(base + b".%d" % number + ext)
    return candidate


def _exists(path: bytes) -> bool:
    return os.path.exists(util.syspath(path))


def _remove_partial_copies(dst: bytes) -> None:
    """Delete the temp files ``util.move`` leaves when killed mid-copy across devices."""
    prefix = beets.config["tempfile_prefix"].get() or "."
    directory, name = os.path.split(os.fsdecode(dst))
    for leftover in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix + name) + ".*.beets")):
        os.remove(leftover)


def _settle(entity: Item | Album, move: Move) -> str | None:
    """Decide one intent. Return a note when the entity must point at ``dst``."""
    field = PATH_FIELD[move.kind]
    current = entity[field]
    if current != move.src:
        return None  # stored already (== dst) or changed by someone since
    src, dst = _exists(move.src), _exists(move.dst)
    if dst and src:
        if not filecmp.cmp(util.syspath(move.src), util.syspath(move.dst), shallow=False):
            return None  # dst is someone else's file: keep ours at src
        # A cross-device move copied but did not remove the source yet. Remove
        # it before storing: if we die in between, the next pass sees src gone.
        os.remove(util.syspath(move.src))
    elif not dst:
        return None  # never moved (or both gone: nothing to point at)
    return f"{move.kind} {move.entity}: moved to {util.displayable_path(move.dst)} but not recorded; path repaired"


def reconcile(lib: Library, store: JobStore, exclude_job: int | None = None,
              log: Callable[[str], None] | None = None) -> int:
    """Settle the intents of dead jobs. Returns how many paths were repaired."""
    moves = store.pending_moves(exclude_job)
    if not moves:
        return 0
    repaired: list[tuple[Item | Album, Move]] = []
    with lib.music_dir_context():
        for move in moves:
            _remove_partial_copies(move.dst)
            getter = lib.get_item if move.kind == "item" else lib.get_album
            entity = getter(move.entity)
            note = _settle(entity, move) if entity is not None else None
            if note:
                entity[PATH_FIELD[move.kind]] = move.dst
                repaired.append((entity, move))
                if log:
                    log(note)
        if repaired:
            with atomic(lib):
                for entity, _ in repaired:
                    entity.store()
        for _, move in repaired:
            util.prune_dirs(os.path.dirname(move.src), lib.directory,
                            clutter=beets.config["clutter"].as_str_seq())
    store.forget([move.id for move in moves])
    return len(repaired)
