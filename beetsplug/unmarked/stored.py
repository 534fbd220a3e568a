"""Items and albums as the library stores them, read in bulk.

The engine reads a wave's rows in one query and keeps them as read: the
batch's commit compares them with what the library holds then, and an item
another program changed meanwhile is done again instead of overwritten.
Rows are tuples, not dicts: a dict of ~100 columns costs ~40 us an item to
build and ~10 to compare.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from beets.library import Item

from .beets_compat import model_from_row

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from beets.dbcore.db import Transaction
    from beets.library import Library

# An item (or album) as stored: its column names, their values and its flexible attributes.
Row = tuple[tuple[str, ...], tuple[Any, ...], dict[str, Any]]
ITEM_TABLES = ("items", "item_attributes")
ALBUM_TABLES = ("albums", "album_attributes")
MARK_TOLERANCE = 0.001  # seconds: a marker read back is "the same time" as the one a commit wrote


def parts(ids: Sequence[int], size: int = 500) -> Iterator[list[int]]:
    """Ids in groups small enough for one statement's parameters."""
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


def marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))


def rows(tx: Transaction, ids: Sequence[int], tables: tuple[str, str] = ITEM_TABLES) -> dict[int, Row]:
    """Items (or albums, with ``ALBUM_TABLES``) as stored, by id (absent: removed)."""
    table, attributes = tables
    found: dict[int, Row] = {}
    for part in parts(ids):
        fetched = tx.query(f"SELECT * FROM {table} WHERE id IN ({marks(part)})", part)
        if not fetched:
            continue
        names = tuple(fetched[0].keys())
        at = names.index("id")
        for row in fetched:
            values = tuple(row)
            found[values[at]] = (names, values, {})
        for row in tx.query(f"SELECT entity_id, key, value FROM {attributes} "
                            f"WHERE entity_id IN ({marks(part)})", part):
            if row[0] in found:
                found[row[0]][2][row[1]] = row[2]
    return found


def album_of(row: Row) -> int | None:
    names, values, _ = row
    return values[names.index("album_id")]


def marked_at(flex: dict[str, Any], markers: Sequence[str], when: float) -> bool:
    """Every one of ``markers`` holds ``when`` (markers hold epoch times; the
    library keeps them as text of 15 significant digits: ~10 us here)."""
    try:
        return all(marker in flex and abs(float(flex[marker]) - when) < MARK_TOLERANCE for marker in markers)
    except (TypeError, ValueError):  # a marker someone set by hand to something else
        return False


def data_version(tx: Transaction) -> int:
    """SQLite's ``PRAGMA data_version``: it changes when another connection
    (another process, another thread) commits to the library, and only then."""
    return int(tx.query("PRAGMA data_version")[0][0])


def model(lib: Library, row: Row) -> Item:
    """The item a stored row describes (with copies: ``row`` stays as read)."""
    names, values, flex = row
    return model_from_row(Item, lib, dict(zip(names, values)), dict(flex))


def filled(row: Row) -> set[str]:
    """The fields of a stored row that hold something."""
    names, values, flex = row
    return {name for name, value in zip(names, values) if value} | {key for key, value in flex.items() if value}


def read(lib: Library, item_id: int) -> tuple[Row, Item] | None:
    """The item as the library has it now, and its row for the conflict check
    (both from the same rows: a commit in between can only show up as a
    conflict, never hide one)."""
    with lib.transaction() as tx:
        raw = rows(tx, [item_id]).get(item_id)
    return None if raw is None else (raw, model(lib, raw))
