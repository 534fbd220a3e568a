"""The journal: what a running job is about to do to a file, written first.

beets moves a file and then stores the new path; it writes tags to a file and
then stores them. A process killed in between leaves an item pointing at a
file that is gone, or a file whose tags the library does not know. So before
each move or tag write the engine records an ``Intent`` here, and forgets it
once the batch that stores the change has committed, or once the file is put
back to match the library. Whatever is left when the next job claims the
library belonged to a process that died; repair.py settles it.

The intents live in the job store's file (table ``intents``), so they share
its WAL commits: one small commit per wave, fsync'd (``synchronous=FULL``
for it), so that an intent outlives a power cut as well as a killed process;
forgetting one is not synced (an intent a power cut brings back is one
whose change was committed, as after a kill between commit and forget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .files import spare_directory

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from contextlib import AbstractContextManager


class Store(Protocol):
    """What the journal needs of the file it lives in (jobs.JobStore is one)."""

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    def transaction(self, durable: bool = False) -> AbstractContextManager[sqlite3.Connection]: ...

    def record_album_changes(self, job: int, changes: dict[int, dict[str, list[Any]]]) -> None: ...

ITEM, ALBUM, TAGS = "item", "album", "tags"  # a file move, an album art move, a tag write
# Not a file change: items a commit marks (``dst``: the marker time, as text),
# until their events are in the job's record. The repair leaves these: the run
# that resumes the job reads them (runner.adopt); a job that ends drops them.
UNREPORTED = "unreported"
FILE_CHANGES = (ITEM, ALBUM, TAGS)
PATH_FIELD = {ITEM: "path", ALBUM: "artpath"}  # the field a move changes, by kind

SCHEMA = """
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY,
    job INTEGER NOT NULL,
    kind TEXT NOT NULL,
    entity INTEGER NOT NULL,
    src BLOB NOT NULL,
    dst BLOB NOT NULL
)
"""
_COLUMNS = "job, kind, entity, src, dst"


@dataclass(frozen=True)
class Intent:
    """One file change about to happen: ``kind`` says which (ITEM, ALBUM or
    TAGS), ``entity`` is the item or album id. A tag write's ``src`` is the
    file and its ``dst`` the fields it changes (``tag_changes``) and where
    its backup goes if the file's directory refuses one (``spare``)."""

    id: int
    job: int
    kind: str
    entity: int
    src: bytes
    dst: bytes

    @property
    def tag_changes(self) -> dict[str, list[Any]] | None:
        """A tag write's fields, ``{field: [old, new]}`` as its plan has them;
        None for one journaled by a release that did not record them (its
        ``dst`` is the file again)."""
        entry = self._tags_entry()
        if entry is not None and set(entry) == {"fields", "spare"}:  # (no mediafile field has either name)
            entry = entry["fields"]
        return entry if isinstance(entry, dict) else None

    @property
    def spare(self) -> bytes | None:
        """A tag write's spare directory for its backup (files.py), if it recorded one."""
        entry = self._tags_entry()
        if entry is None or set(entry) != {"fields", "spare"} or not isinstance(entry["spare"], str):
            return None
        try:
            return bytes.fromhex(entry["spare"])
        except ValueError:
            return None

    def _tags_entry(self) -> dict[str, Any] | None:
        if self.kind != TAGS or self.dst == self.src:
            return None
        try:
            entry = json.loads(self.dst)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) else None


def tags_entry(entity: int, path: bytes, changes: dict[str, list[Any]],
               spare: bytes | None = None) -> tuple[str, int, bytes, bytes]:
    """The journal entry of a tag write of ``changes`` (``{field: [old, new]}``)
    to the file at ``path``: what an undo or a repair needs to put back
    exactly those fields, and no other tag of the file; with ``spare``, the
    directory its backup goes to if the file's own refuses it (hex: any bytes)."""
    entry: dict[str, Any] = changes if spare is None else {"fields": changes, "spare": spare.hex()}
    return TAGS, entity, path, json.dumps(entry, ensure_ascii=False, default=str).encode()


def create_table(db: sqlite3.Connection) -> None:
    """Make the table; a store from before this name (table ``moves``, same
    columns) has its pending intents carried over. Runs inside the caller's
    write transaction (``BEGIN IMMEDIATE``, see JobStore), so the copy and
    the drop commit together, and a process opening the store at the same
    time finds the table already renamed: the intents are carried over once."""
    db.execute(SCHEMA)
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'moves'").fetchone():
        db.execute(f"INSERT INTO intents ({_COLUMNS}) SELECT {_COLUMNS} FROM moves ORDER BY id")
        db.execute("DROP TABLE moves")


def pending(store: Store, kinds: Sequence[str] | None = FILE_CHANGES) -> list[Intent]:
    """Intents not yet forgotten, oldest first: the file changes, or those of
    ``kinds`` (None: every kind)."""
    where, args = "1", []
    if kinds is not None:
        where, args = f"kind IN ({', '.join('?' * len(kinds))})", list(kinds)
    rows = store.rows(f"SELECT id, {_COLUMNS} FROM intents WHERE {where} ORDER BY id", args)
    return [Intent(r["id"], r["job"], r["kind"], r["entity"], bytes(r["src"]), bytes(r["dst"])) for r in rows]


@dataclass(frozen=True)
class Unreported:
    """An item a commit recorded before its report: the marker time the
    commit gave, and the result the report would have sent (the item event's
    ``file``, ``dest``, ``changes`` and ``undo``: what an undo of the job
    needs); None from a release that noted only the time."""

    time: float
    result: dict[str, Any] | None = None


def unreported_entry(entity: int, time: float, result: dict[str, Any] | None) -> tuple[str, int, bytes, bytes]:
    """The journal entry of an item a commit records, until its report is in the job's record."""
    return UNREPORTED, entity, b"", json.dumps({"time": time, "result": result}, default=str).encode()


def _unreported(dst: bytes) -> Unreported:
    if not dst.startswith(b"{"):
        return Unreported(float(dst))  # (a release that noted only the marker time)
    entry = json.loads(dst)
    return Unreported(float(entry["time"]), entry.get("result"))


def unreported(store: Store, job: int) -> dict[int, Unreported]:
    """What ``job``'s stopped run committed and never reported, by item."""
    return {i.entity: _unreported(i.dst) for i in pending(store, kinds=[UNREPORTED]) if i.job == job}


def drop_unreported(db: sqlite3.Connection, job: int) -> None:
    """Forget ``job``'s UNREPORTED notes (in the caller's transaction): the job
    has ended, or its resumed run has used them."""
    db.execute("DELETE FROM intents WHERE job = ? AND kind = ?", (job, UNREPORTED))


def forget(store: Store, intent_ids: Sequence[int]) -> None:
    """Drop intents whose change is committed, undone or settled."""
    if not intent_ids:
        return
    with store.transaction() as db:
        db.executemany("DELETE FROM intents WHERE id = ?", [(i,) for i in intent_ids])


@dataclass
class Journal:
    """A running job's handle on the journal."""

    store: Store
    job: int

    @property
    def spare(self) -> bytes | None:
        """Where tag writes put backups their file's directory refuses: beside the job store."""
        path = getattr(self.store, "path", None)
        return spare_directory(path) if isinstance(path, (str, bytes)) else None

    def intend_many(self, entries: Sequence[tuple[str, int, bytes, bytes]]) -> list[int]:
        """Intents ``(kind, entity, src, dst)`` in one transaction; their ids, in order."""
        if not entries:
            return []
        with self.store.transaction(durable=True) as db:  # on disk before the change it describes
            insert = f"INSERT INTO intents ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
            return [int(db.execute(insert, (self.job, *entry)).lastrowid or 0) for entry in entries]

    def forget(self, intent_ids: Sequence[int]) -> None:
        forget(self.store, intent_ids)

    def record_albums(self, changes: dict[int, dict[str, list[Any]]]) -> None:
        """The album fields the job is about to change, for its undo (reversal.py)."""
        if changes:
            self.store.record_album_changes(self.job, changes)


class NoJournal:
    """A pretend run's journal: it changes no file, so it has nothing to journal."""

    spare = None

    def intend_many(self, entries: Sequence[tuple[str, int, bytes, bytes]]) -> list[int]:
        if entries:
            raise AssertionError("a pretend run journaled a file change")
        return []

    def forget(self, intent_ids: Sequence[int]) -> None:
        if intent_ids:
            raise AssertionError("a pretend run forgot a journal entry")

    def record_albums(self, changes: dict[int, dict[str, list[Any]]]) -> None:
        pass  # a pretend run changes no album
