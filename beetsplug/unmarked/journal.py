"""Crash safety: an intent is recorded before a file changes and settled after a crash.

beets moves a file and then stores the new path; it writes tags to a file and
then stores them. A process killed in between leaves an item pointing at a
file that is gone, or a file whose tags the library does not know. So before
each move or tag write the engine records an intent in the job store, and
forgets it once the batch that stores the change has committed. Whatever is
left when the next job claims the library belonged to a process that died:
``reconcile`` repairs paths from what is on disk, then rewrites the tags of
files whose write was not recorded from the library's values.
"""

from __future__ import annotations

import errno
import filecmp
import glob
import os
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import beets
from beets import util
from beets.library import FileOperationError

from .jobs import JobStore, Move
from .transaction import atomic

if TYPE_CHECKING:
    from beets.library import Album, Item, Library

PATH_FIELD = {"item": "path", "album": "artpath"}  # kinds of move; "tags" marks a tag write


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


def write_tags(item: Item) -> None:
    """``Item.write``, but a disk that fills up mid-write leaves the file as it was.

    mutagen grows a file before it moves any audio data; on ENOSPC it stops
    with the file longer by a run of zeros (seen with MP3). Cutting it back to
    its old size restores it byte for byte.
    """
    size = os.path.getsize(util.syspath(item.path))
    try:
        item.write()
    except FileOperationError as exc:
        if _disk_full(exc):
            _truncate(item.path, size)
        raise


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC anywhere in the chain (beets wraps mutagen, which wraps OSError)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        todo += [getattr(current, "reason", None), current.__cause__, current.__context__,
                 *[a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]]
    return False


def _truncate(path: bytes, size: int) -> None:
    """Undo a tag write that died growing the file (mutagen extends the file
    before it moves any audio data, so the first ``size`` bytes are intact)."""
    with suppress(OSError):
        if os.path.getsize(util.syspath(path)) > size:
            os.truncate(util.syspath(path), size)


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
    """Settle the intents of dead jobs. Returns how many items or albums were repaired."""
    intents = store.pending_moves(exclude_job)
    if not intents:
        return 0
    moves = [i for i in intents if i.kind in PATH_FIELD]
    with lib.music_dir_context():
        repaired = _repair_paths(lib, moves, log)
        rewritten = _rewrite_tags(lib, {i.entity for i in intents if i.kind == "tags"}, log)
    store.forget([intent.id for intent in intents])
    return repaired + rewritten


def _repair_paths(lib: Library, moves: list[Move], log: Callable[[str], None] | None) -> int:
    repaired: list[tuple[Item | Album, Move]] = []
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
    return len(repaired)


def _rewrite_tags(lib: Library, item_ids: set[int], log: Callable[[str], None] | None) -> int:
    """Make files whose tag write was not recorded match the library again."""
    count = 0
    for item in filter(None, map(lib.get_item, sorted(item_ids))):
        try:
            write_tags(item)
        except FileOperationError as exc:
            if log:
                log(f"item {item.id}: could not restore its tags after a crash: {exc}")
            continue
        count += 1
        if log:
            log(f"item {item.id}: tags written before a crash were not recorded; file rewritten from the library")
    return count
