"""Settling the journal after a crash (see journal.py for what it holds).

The intents left when a job claims the library belonged to a process that
died. ``reconcile`` repairs paths from what is on disk, puts a file a killed
tag write may have torn back from its backup (in place, files.py) unless the
library's commit holds that write, removes the temp files and backups a
killed copy or tag write left, then rewrites the tags of files whose write
was not recorded from the library's values.

Repair never blocks a run: an entry whose file cannot be repaired (gone,
unreadable, in a directory we cannot write) is reported once, with the item,
the path and the reason, and set aside; only the library itself being
unusable stops the repair, and then every entry is kept for the next run.
Log calls pass paths as ``{}`` arguments: beets' logger runs
``msg.format(*args)``, so a path with braces in the message would raise.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import beets
from beets import util

from . import journal
from .beets_compat import music_dir
from .files import remove_stale_temps, settle_backups, write_tags
from .moves import library_durable, release, sync_dirs
from .recovery import put_back_fields, remove_partial_copies, same_value
from .transaction import atomic

if TYPE_CHECKING:
    from beets.library import Album, Item, Library

    from .jobs import JobStore
    from .journal import Intent

Log = Callable[..., Any]  # a beets logger method: a "{}" template, then its arguments


def _quiet(msg: str, *args: Any) -> None:
    pass


def reconcile(lib: Library, store: JobStore, *, log: Log | None = None) -> int:
    """Settle the intents of dead jobs. Returns how many items or albums were repaired."""
    intents = journal.pending(store)  # file changes only: UNREPORTED notes are the resumer's
    if not intents:
        return 0
    log = log or _quiet
    with music_dir(lib):
        repaired = _repair_paths(lib, [i for i in intents if i.kind in journal.PATH_FIELD], log)
        rewritten = _rewrite_tags(lib, [i for i in intents if i.kind == journal.TAGS], log)
    library_durable(lib)  # what the repair stored, before the journal forgets it
    journal.forget(store, [intent.id for intent in intents])
    return repaired + rewritten


def _set_aside(log: Log, intent: Intent, path: bytes, what: str, exc: BaseException) -> None:
    log("{} {}: {} after an interrupted run failed for {}: {}; journal entry set aside",
        "album" if intent.kind == journal.ALBUM else "item", intent.entity, what, util.displayable_path(path), exc)


# --- paths --------------------------------------------------------------------


def _exists(path: bytes) -> bool:
    return os.path.exists(util.syspath(path))


def _moved(entity: Item | Album, intent: Intent, emptied: list[bytes], log: Log) -> bool:
    """Decide one intent: True when the entity must point at ``dst``.

    A move that left the file at both names (moves.py: a link or a copy, the
    source removed after the commit) keeps the name the library holds and
    loses the other, so the library's path exists at every step; the
    directory a name was removed from goes into ``emptied`` (to prune)."""
    path = entity[journal.PATH_FIELD[intent.kind]]
    if path == intent.dst:  # committed: the source name may be left
        if release(intent.dst, intent.src):
            sync_dirs([os.path.dirname(intent.src)])
            emptied.append(os.path.dirname(intent.src))
            log("{} {}: moved to {} and recorded; its old name {} removed", intent.kind, intent.entity,
                util.displayable_path(intent.dst), util.displayable_path(intent.src))
        return False
    if path != intent.src:
        return False  # changed by someone since
    src, dst = _exists(intent.src), _exists(intent.dst)
    if dst and src:
        if release(intent.src, intent.dst):  # not committed: the library's name stays
            sync_dirs([os.path.dirname(intent.dst)])
            emptied.append(os.path.dirname(intent.dst))
            log("{} {}: placed at {} but not recorded; that name removed, the file stays at {}", intent.kind,
                intent.entity, util.displayable_path(intent.dst), util.displayable_path(intent.src))
        return False  # (a different file at dst is someone else's: ours stays at src)
    return dst  # not moved (or both gone: nothing to point at) unless dst is there


def _repair_paths(lib: Library, intents: list[Intent], log: Log) -> int:
    repaired: list[tuple[Item | Album, Intent]] = []
    emptied: list[bytes] = []
    for intent in intents:
        getter = lib.get_item if intent.kind == journal.ITEM else lib.get_album
        entity = getter(intent.entity)  # a library error stops the repair; entries are kept
        try:
            remove_partial_copies(intent.dst)
            if entity is None or not _moved(entity, intent, emptied, log):
                continue
        except Exception as exc:  # this entry's files only: report, set aside, go on
            _set_aside(log, intent, intent.src, "the path repair", exc)
            continue
        entity[journal.PATH_FIELD[intent.kind]] = intent.dst
        repaired.append((entity, intent))
        log("{} {}: moved to {} but not recorded; path repaired",
            intent.kind, intent.entity, util.displayable_path(intent.dst))
    if repaired:
        with atomic(lib):
            for entity, _ in repaired:
                entity.store()
    clutter = beets.config["clutter"].as_str_seq()
    for directory in [os.path.dirname(intent.src) for _, intent in repaired] + emptied:
        with suppress(OSError):
            util.prune_dirs(directory, lib.directory, clutter=clutter)
    return len(repaired)


# --- tags ---------------------------------------------------------------------


def _recorded(item: Item | None, changes: dict[str, list[Any]] | None) -> bool:
    """The library holds every new value of the write: its commit happened."""
    return item is not None and changes is not None and all(same_value(item.get(key), new)
                                                            for key, (_, new) in changes.items())


def _rewrite_tags(lib: Library, intents: list[Intent], log: Log) -> int:
    """Make files whose tag write was not recorded match the library again."""
    count = 0
    for intent in {i.entity: i for i in intents}.values():
        item = lib.get_item(intent.entity)
        places = dict.fromkeys([intent.src] + ([item.path] if item is not None else []))
        try:
            # A kill during a resizing write may have torn the file: its bytes come back from the
            # write's backup (in place), unless the library's commit holds the write (then it was
            # complete: the engine commits only what its worker reported done).
            if settle_backups(intent.src, intent.spare, complete=_recorded(item, intent.tag_changes)):
                log("item {}: a tag write was interrupted; {} was put back from its backup copy",
                    intent.entity, util.displayable_path(intent.src))
            for place in places:
                remove_stale_temps(place)
        except OSError as exc:
            _set_aside(log, intent, intent.src, "restoring the file from its backup copy", exc)
            continue
        if not _exists(intent.src):  # moved: its old directory may have been kept only by the backup
            with suppress(OSError):
                util.prune_dirs(os.path.dirname(intent.src), lib.directory,
                                clutter=beets.config["clutter"].as_str_seq())
        if item is None:
            continue  # removed from the library since: nothing to restore
        changes = intent.tag_changes
        try:
            if changes is None:  # journaled by an older release, without its fields: beets' whole write
                write_tags(item)
            elif not put_back_fields(item.path, changes, {key: item.get(key) for key in changes},
                                     beets.config["id3v23"].get(bool)):
                continue  # the file holds none of the write's values: never reached, or recorded
        except Exception as exc:  # gone, unreadable, unwritable: report, set aside, go on
            _set_aside(log, intent, item.path, "restoring the tags", exc)
            continue
        count += 1
        log("item {}: tags written before an interrupted run ended were not recorded; "
            "{} has the fields it changed put back from the library", item.id, util.displayable_path(item.path))
    return count
