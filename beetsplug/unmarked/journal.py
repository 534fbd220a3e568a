"""Crash safety: an intent is recorded before a file changes and settled after a crash.

beets moves a file and then stores the new path; it writes tags to a file and
then stores them. A process killed in between leaves an item pointing at a
file that is gone, or a file whose tags the library does not know. So before
each move or tag write the engine records an intent in the job store, and
forgets it once the batch that stores the change has committed. Whatever is
left when the next job claims the library belonged to a process that died:
``reconcile`` repairs paths from what is on disk, removes the temp files a
killed copy or tag write left (files.py), then rewrites the tags of files
whose write was not recorded from the library's values.

Repair never blocks a run: an entry whose file cannot be repaired (gone,
unreadable, in a directory we cannot write) is reported once, with the item,
the path and the reason, and set aside; only the library itself being
unusable stops the repair, and then every entry is kept for the next run.
Log calls pass paths as ``{}`` arguments: beets' logger runs
``msg.format(*args)``, so a path with braces in the message would raise.
"""

from __future__ import annotations

import filecmp
import os
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import beets
from beets import util

from .beets_compat import music_dir
from .files import remove_partial_copies, remove_stale_temps, write_tags
from .transaction import atomic

if TYPE_CHECKING:
    from beets.library import Album, Item, Library

    from .jobs import JobStore, Move

PATH_FIELD = {"item": "path", "album": "artpath"}  # kinds of move; "tags" marks a tag write

Log = Callable[..., Any]  # a beets logger method: a "{}" template, then its arguments


def _quiet(msg: str, *args: Any) -> None:
    pass


def reconcile(lib: Library, store: JobStore, exclude_job: int | None = None, log: Log | None = None) -> int:
    """Settle the intents of dead jobs. Returns how many items or albums were repaired."""
    intents = store.pending_moves(exclude_job)
    if not intents:
        return 0
    log = log or _quiet
    with music_dir(lib):
        repaired = _repair_paths(lib, [i for i in intents if i.kind in PATH_FIELD], log)
        rewritten = _rewrite_tags(lib, [i for i in intents if i.kind == "tags"], log)
    store.forget([intent.id for intent in intents])
    return repaired + rewritten


def _set_aside(log: Log, move: Move, path: bytes, what: str, exc: BaseException) -> None:
    log("{} {}: {} after an interrupted run failed for {}: {}; journal entry set aside",
        "album" if move.kind == "album" else "item", move.entity, what, util.displayable_path(path), exc)


# --- paths --------------------------------------------------------------------


def _exists(path: bytes) -> bool:
    return os.path.exists(util.syspath(path))


def _settle(entity: Item | Album, move: Move) -> bool:
    """Decide one intent: True when the entity must point at ``dst``."""
    if entity[PATH_FIELD[move.kind]] != move.src:
        return False  # stored already (== dst) or changed by someone since
    src, dst = _exists(move.src), _exists(move.dst)
    if dst and src:
        if not filecmp.cmp(util.syspath(move.src), util.syspath(move.dst), shallow=False):
            return False  # dst is someone else's file: keep ours at src
        # A cross-device move copied but did not remove the source yet. Remove
        # it before storing: if we die in between, the next pass sees src gone.
        os.remove(util.syspath(move.src))
    return dst  # not moved (or both gone: nothing to point at) unless dst is there


def _repair_paths(lib: Library, moves: list[Move], log: Log) -> int:
    repaired: list[tuple[Item | Album, Move]] = []
    for move in moves:
        getter = lib.get_item if move.kind == "item" else lib.get_album
        entity = getter(move.entity)  # a library error stops the repair; entries are kept
        try:
            remove_partial_copies(move.dst)
            if entity is None or not _settle(entity, move):
                continue
        except Exception as exc:  # this entry's files only: report, set aside, go on
            _set_aside(log, move, move.src, "the path repair", exc)
            continue
        entity[PATH_FIELD[move.kind]] = move.dst
        repaired.append((entity, move))
        log("{} {}: moved to {} but not recorded; path repaired",
            move.kind, move.entity, util.displayable_path(move.dst))
    if repaired:
        with atomic(lib):
            for entity, _ in repaired:
                entity.store()
    clutter = beets.config["clutter"].as_str_seq()
    for _, move in repaired:
        with suppress(OSError):
            util.prune_dirs(os.path.dirname(move.src), lib.directory, clutter=clutter)
    return len(repaired)


# --- tags ---------------------------------------------------------------------


def _rewrite_tags(lib: Library, intents: list[Move], log: Log) -> int:
    """Make files whose tag write was not recorded match the library again."""
    count = 0
    for move in {m.entity: m for m in intents}.values():
        item = lib.get_item(move.entity)
        places = dict.fromkeys([move.src] + ([item.path] if item is not None else []))
        try:
            for place in places:
                remove_stale_temps(place)
        except OSError as exc:
            _set_aside(log, move, move.src, "removing temp files", exc)
            continue
        if item is None:
            continue  # removed from the library since: nothing to restore
        try:
            write_tags(item)
        except Exception as exc:  # gone, unreadable, unwritable: report, set aside, go on
            _set_aside(log, move, item.path, "restoring the tags", exc)
            continue
        count += 1
        log("item {}: tags written before an interrupted run ended were not recorded; "
            "{} rewritten from the library", item.id, util.displayable_path(item.path))
    return count
