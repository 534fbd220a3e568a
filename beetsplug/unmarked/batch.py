"""What a run holds while it works: one ``Touch`` per item, grouped in waves and batches.

A *batch* is what one commit records; it is worked in *waves* of items read
together, whose file work is handed out together. A ``Touch`` is one item
in a batch: its plan (the rules' changes, its destination once placed), how
it was read, what its worker reported, and its state (states.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beets.util import FilesystemError

from .beets_compat import FileOperationError
from .results import ItemResult, readable
from .states import DONE, FAILED, Tracker

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from beets.library import Item
    from beets.logging import BeetsLogger

    from .stored import Row

# What can go wrong with one item without stopping the run.
ITEM_ERRORS = (FileOperationError, FilesystemError, OSError)


class ItemError(Exception):
    """An item cannot be done; the message names the file and the reason."""


def describe(exc: Exception, file: str, log: BeetsLogger) -> str:
    """beets' file errors already name the path; anything else gets it added."""
    if isinstance(exc, (*ITEM_ERRORS, ItemError)):
        return str(exc)
    log.debug("unexpected error on {}", file, exc_info=True)
    return f"{file}: {type(exc).__name__}: {exc}"


def undo_record(markers_before: dict[str, Any], src: bytes, dest: bytes) -> dict[str, Any]:
    """An item event's ``undo``: its markers before the run, and its exact
    paths when the event's ``file``/``dest`` text cannot spell them."""
    record: dict[str, Any] = {"markers": markers_before}
    for key, path in (("src", src), ("dest", dest)):
        if readable(path).encode() != path:
            record[key] = os.fsdecode(path)  # (lone surrogates: JSON escapes them, ``os.fsencode`` gives the bytes)
    return record


@dataclass(eq=False)
class Touch(Tracker):
    """One item a batch works on: how it was read, its plan, and what was
    done to its file (``state``: where it is in its life, see states.py).

    ``intents`` are its journal entries still open: forgotten only once the
    batch has committed, or once the file is put back to match the library.
    """

    id: int
    item: Item  # as changed: tags, path, markers
    row: Row  # its library row as read (the item has copies); another row at commit: another writer changed it
    src: bytes  # where the file was
    file: str = ""  # ``src`` for messages
    changes: dict[str, list[Any]] = field(default_factory=dict)  # by the rules: field -> [old, new]
    before: Item | None = None  # --pretend: as read, for the diff
    dest: bytes | None = None  # where a move was tried to (it may have happened even if it raised)
    result: ItemResult | None = None  # set once the item is done or has failed
    markers: tuple[str, ...] = ()
    store: bool = False  # the commit stores the item (with ``markers``)
    wrote: bool = False  # the file may hold tags the library does not
    write_known: bool = False  # its worker reported the write done: the file is whole
    backup: bytes | None = None  # the write's backup (files.py): removed once the commit records the write
    moved: bool = False  # the file is at ``item.path``, no longer at ``src``
    linked: bool = False  # moved, and ``src`` still names the file too, until after the commit (moves.py)
    intents: list[int] = field(default_factory=list)
    move_intent: int | None = None  # of those, its move's (kept until the old name is gone when ``linked``)
    markers_before: dict[str, Any] = field(default_factory=dict)  # as read: what an undo puts back (reversal.py)

    def fail(self, error: str) -> None:
        """One item's trouble never stops the run: it is reported, unmarked;
        if its file changed, the commit records what it holds (no marker)."""
        self.to(FAILED)
        self.store = self.wrote or self.moved
        self.result = ItemResult(self.id, self.file, success=False, error=readable(error))

    def succeed(self, markers: tuple[str, ...], pretend: bool) -> None:
        """Its file work is done: the commit stores it with ``markers``."""
        self.to(DONE)
        self.store, self.markers = not pretend, markers
        self.result = ItemResult(self.id, self.file, readable(self.item.path), changes=self.changes,
                                 before=self.before, after=self.item if pretend else None,
                                 undo=None if pretend else undo_record(self.markers_before, self.src, self.item.path))


@dataclass
class Handed:
    """An item whose file work a worker has: its intents, to resolve by the report."""

    touch: Touch
    batch: Batch
    tags: dict[str, Any] | None
    dest: bytes | None
    tags_intent: int | None = None
    move_intent: int | None = None


@dataclass
class Wave:
    """Items read together, whose file work is done together."""

    touches: list[Touch]  # the ones with work left
    asked: int = 0  # the first this many: their destinations were asked of the helper
    slot: int = 0  # the helper's request for them (see ``Helper.steal``)
    early: bool = False  # begun while the batch before it committed (``Waves.look_ahead``)


@dataclass
class Batch:
    """Work done since the last commit."""

    started: float = field(default_factory=time.monotonic)
    outcomes: list[Touch | ItemResult] = field(default_factory=list)  # in id order; a touch's result comes later
    results: list[ItemResult] = field(default_factory=list)  # what is reported, once every outcome is known
    touches: list[Touch] = field(default_factory=list)
    taken: set[bytes] = field(default_factory=set)  # destinations promised in this batch
    adopted: set[bytes] = field(default_factory=set)  # of those, already holding the item's file (Planner.place)
    vacated: set[bytes] = field(default_factory=set)  # directories items left
    placed: set[bytes] = field(default_factory=set)  # directories that got names: synced before the commit
    albums: set[int] = field(default_factory=set)  # albums whose items moved (art follows)
    pending: Wave | None = None  # begun, to finish before the commit
    versions: set[int] = field(default_factory=set)  # the library's data_version at each read of the batch's rows
    album_rows: dict[int, Row] = field(default_factory=dict)  # its items' albums, as first read (path formats use them)
    committed: bool = False  # set with the COMMIT (see Committer.in_transaction)
    left_out: set[int] = field(default_factory=set)  # by that commit: items another program changed
    unreported: list[int] = field(default_factory=list)  # journal entries: marked by the commit, not yet reported

    def known(self) -> list[ItemResult]:
        """The results known so far, in id order (a touch its worker has not reported on has none)."""
        results = []
        for outcome in self.outcomes:
            result = outcome.result if isinstance(outcome, Touch) else outcome
            if result is not None:
                results.append(result)
        return results


def chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def few(ids: Sequence[int], shown: int = 10) -> str:
    """Ids for a message: the first ``shown`` and how many more."""
    return ", ".join(map(str, ids[:shown])) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")
