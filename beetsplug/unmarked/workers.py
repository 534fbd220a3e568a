"""Who does an item's file work: one interface, two workers.

The engine turns each item's plan into a ``FileTask`` (write these tags,
then move the file there), journals it, hands it to its worker and applies
each item from the ``FileDone`` report. It never does file work itself, so
an item's file goes through the same steps whoever does them:

* ``InProcess``: this process, each task as it is handed out (beets' plugin
  events are the engine's, sent around the hand-out and the report);
* ``helper.Helper``: a forked helper process, the second core's share
  (helper.py says when a run can have one and how it stays safe).

Both answer in the order asked, both stop after the item in hand, and both
report what they did to a file the same way (``file_work``), so the undo
and the crash repair never need to know which one did it.
"""

from __future__ import annotations

import os
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from beets import util
from beets.util import FilesystemError

from .beets_compat import FileOperationError
from .errors import ClaimLost
from .files import write_fields
from .moves import place
from .recovery import where_after_failed_move

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class FileTask:
    """One item's file work: write ``tags`` (if any) at ``src``, then move to ``dest`` (if any)."""

    key: int
    src: bytes
    tags: dict[str, Any] | None
    dest: bytes | None
    adopt: bool = False  # ``dest`` already holds the file (see ``Planner.place``)
    spare: bytes | None = None  # where a backup goes if the file's directory refuses it (files.py)
    expect: dict[str, Any] | None = None  # what the tags must hold before the write (an undo: files.write_fields)


@dataclass
class FileDone:
    """What a worker did for a ``FileTask``."""

    key: int
    skipped: bool = False  # not tried: the worker was stopping
    write_error: str | None = None
    mtime: int | None = None  # of the written file, as ``Item.current_mtime`` gives it
    backup: bytes | None = None  # the written file's backup (a resizing write): removed after the commit
    warning: str | None = None  # the write was not protected against a kill: why (the engine logs it)
    # The file after its move: "src" (not moved), "both" (placed at the destination,
    # the source name goes after the commit: moves.py), "dst" (moved), None (unsure).
    where: str | None = "src"
    move_error: str | None = None
    lost: str | None = None  # the claim was lost before this item: nothing done


Reply = tuple[str, list[Any]]  # the kind of request answered ("files", "destinations") and its reports


class Worker(Protocol):
    """What the engine needs of a worker (``InProcess``, ``helper.Helper``)."""

    @property
    def busy(self) -> int: ...

    def awaits(self, kind: str) -> bool: ...

    def send_files(self, tasks: list[FileTask]) -> None: ...

    def receive(self, cancelled: Callable[[], bool] = ...) -> Reply: ...

    def stop(self) -> list[Reply] | None: ...

    def close(self) -> None: ...


def describe(exc: BaseException, file: str) -> str:
    """An item error as the engine words it: beets' file errors name the
    path already; anything else gets it added."""
    if isinstance(exc, (FileOperationError, FilesystemError, OSError)):
        return str(exc)
    return f"{file}: {type(exc).__name__}: {exc}"


def flush_data(path: bytes) -> None:
    """``fdatasync`` a file written in place (the tag fitted its padding)."""
    fd = os.open(util.syspath(path), os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def file_work(task: FileTask, id3v23: bool) -> FileDone:
    """Do one task: the changed tags (untearable, ``files.write_fields``; a
    resizing write's backup is kept and reported, for the engine to remove
    after its commit), then the file placed at its destination
    (``moves.place``: the source name is removed after the commit). A write
    that fails leaves the file as it was and stops the item there; a failed
    move says where the file is."""
    done = FileDone(task.key)
    file = util.displayable_path(task.src)
    if task.tags is not None:
        try:
            written = write_fields(task.src, task.tags, id3v23, spare=task.spare, keep_backup=True,
                                   expect=task.expect)
        except Exception as exc:
            done.write_error = describe(exc, file)
            return done
        done.backup, done.warning = written.backup, written.warning
        if written.route != "backed up":  # (that route syncs the file itself)
            with suppress(OSError):  # (written all the same: the report must say so)
                flush_data(task.src)  # on disk before the commit records it: a power cut cannot undo it unseen
        try:
            done.mtime = int(os.path.getmtime(util.syspath(task.src)))
        except OSError:
            done.mtime = None
    if task.dest is not None:
        try:
            placed = place(task.src, task.dest, adopt=task.adopt)
        except Exception as exc:
            done.move_error = describe(exc, file)
            try:
                done.where = where_after_failed_move(task.src, task.dest, exc)
            except OSError:
                done.where = None
        else:
            done.where = placed
    return done


class InProcess:
    """This process is the worker: each task is done when it is handed out,
    after the fencing ``guard`` (a lost claim: that task and the rest are
    not tried). Ctrl-C inside a task leaves it unreported; the engine's undo
    then finds out from the files, as for a helper that was killed."""

    def __init__(self, guard: Callable[[], None], id3v23: bool) -> None:
        self._guard, self._id3v23 = guard, id3v23
        self._replies: deque[Reply] = deque()

    @property
    def busy(self) -> int:
        return len(self._replies)

    def awaits(self, kind: str) -> bool:
        return any(reply_kind == kind for reply_kind, _ in self._replies)

    def send_files(self, tasks: list[FileTask]) -> None:
        reports: list[FileDone] = []
        lost: str | None = None
        for task in tasks:
            if lost is None:
                try:
                    self._guard()
                except ClaimLost as exc:
                    lost = str(exc)
            reports.append(FileDone(task.key, lost=lost) if lost is not None else file_work(task, self._id3v23))
        self._replies.append(("files", reports))

    def receive(self, cancelled: Callable[[], bool] = lambda: False) -> Reply:
        return self._replies.popleft()

    def stop(self) -> list[Reply] | None:
        replies, self._replies = list(self._replies), deque()
        return replies

    def close(self) -> None:
        self._replies.clear()
