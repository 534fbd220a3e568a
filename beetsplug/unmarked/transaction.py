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

from .beets_compat import UserError, begin_immediate, commit, library_file, rollback
from .beets_compat import rolled_back as rolled_back  # for --pretend; beets contact lives there

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
    wait_until_writable(lib)
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


def wait_until_writable(lib: Library) -> None:
    """Wait for the library's write lock *outside* beets' transaction.

    beets serialises every root transaction of a process, reads included,
    behind one lock. Waiting for another program's write lock (up to beets'
    ``timeout``) inside it would stall every reader of this process (the web
    page's counts and lists) for as long. So wait here, on a connection of our
    own, and let it go at once; the commit that follows then finds the lock
    free (or, if another writer slipped in meanwhile, waits inside as before).
    """
    path = library_file(lib)
    if path == ":memory:":
        return
    probe = sqlite3.connect(path, timeout=lib.timeout, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if is_locked_error(exc):
            raise LibraryLockedError(locked_message(lib)) from exc
        raise
    finally:
        probe.close()
