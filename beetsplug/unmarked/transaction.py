"""All-or-nothing writes to the beets library.

beets' ``Transaction`` commits on exit even when the block raised, and if that
commit itself fails (``database is locked``) it never releases the process-wide
database lock. Marker writes must be all or nothing, so they go through
``atomic()``: it takes the write lock up front, commits inside the block and
rolls back on any error, leaving beets' own exit with nothing to do.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .beets_compat import UserError, begin, begin_immediate, commit, library_file, rollback

if TYPE_CHECKING:
    from collections.abc import Iterator

    from beets.dbcore.db import Transaction
    from beets.library import Library

# Page cache for one batch (KiB, as SQLite's negative cache_size). Pages are
# allocated only as needed; a cache that holds the whole transaction keeps
# SQLite from spilling mid-way, which costs extra journal fsyncs.
BATCH_CACHE_KIB = 256 * 1024


class LibraryLockedError(UserError):
    """The library database stayed locked by another process past beets' timeout."""


def is_locked_error(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def locked_message(lib: Library) -> str:
    return (
        f"the library database {library_file(lib)} is locked by another process "
        f"(waited {lib.timeout:g} s, the 'timeout' setting); nothing was "
        "changed, try again when the other writer is done"
    )


@contextmanager
def atomic(lib: Library) -> Iterator[Transaction]:
    """A root transaction that commits whole or not at all.

    Must not be nested in another transaction of the same thread. Raises
    ``LibraryLockedError`` when the write lock cannot be had in time.
    """
    with lib.transaction() as tx:
        cache = tx.query("PRAGMA cache_size")[0][0]
        tx.query(f"PRAGMA cache_size = -{BATCH_CACHE_KIB}")
        try:
            _begin_immediate(lib, tx)
            try:
                yield tx
                commit(tx)
            except BaseException as exc:
                rollback(tx)
                if is_locked_error(exc):
                    raise LibraryLockedError(locked_message(lib)) from exc
                raise
        finally:
            tx.query(f"PRAGMA cache_size = {cache}")


def _begin_immediate(lib: Library, tx: Transaction) -> None:
    """Take the write lock now, so a busy database fails before any work."""
    try:
        begin_immediate(tx)
    except sqlite3.OperationalError as exc:
        if is_locked_error(exc):
            raise LibraryLockedError(locked_message(lib)) from exc
        raise


@contextmanager
def rolled_back(lib: Library) -> Iterator[Transaction]:
    """A root transaction that is always rolled back: for ``--pretend``, which
    must see its own album changes while computing paths and keep none."""
    with lib.transaction() as tx:
        begin(tx)
        try:
            yield tx
        finally:
            rollback(tx)
