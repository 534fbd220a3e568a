"""The markers: their types, the ``unmarked:`` query, and batch mark/unmark.

A marker is a flexible attribute (``normalized`` / ``renamed``) holding the
epoch time of the last completed operation. beets evaluates any query on a
flexible attribute in Python over every row, so ``UnmarkedQuery`` answers in
SQL (``NOT EXISTS`` on ``item_attributes``) and keeps combined queries fast.
Batch writes are single statements in one ``atomic()`` transaction: one
commit (a handful of fsyncs) for any number of items. They go around beets'
models, so they send beets' ``database_change`` themselves, once per batch
(``_announce``), for plugins that follow library changes (mpdupdate,
smartplaylist, ...).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from beets import plugins
from beets.dbcore import types
from beets.dbcore.query import FieldQuery, InvalidQueryArgumentValueError

from .layout import LAYOUT, fingerprint
from .operations import MARKER_FIELDS, OPERATIONS, RENAMED
from .transaction import atomic

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from beets.dbcore.db import Model
    from beets.library import Item, Library

ITEM_TYPES: dict[str, types.Type] = {field: types.DATE for field in MARKER_FIELDS}

_TRUE = {"true", "yes", "on", "1", "process"}
_FALSE = {"false", "no", "off", "0"}
_PATTERNS = "true, false, rename, normalize or process"

# Only a handful of markers per statement list; item ids go through executemany.
_HAS_MARKER = (
    "EXISTS (SELECT 1 FROM item_attributes AS marker "
    "WHERE marker.entity_id = items.id AND marker.key = ?)"
)
# A fingerprint that is not the current one (a NULL one counts as missing: current).
_STALE = (
    "EXISTS (SELECT 1 FROM item_attributes AS layout "
    "WHERE layout.entity_id = items.id AND layout.key = ? AND layout.value != ?)"
)


def _holds(marker: str, current: str) -> tuple[str, list[Any]]:
    """SQL for "the item has ``marker``, and it holds under the configuration in force"."""
    if marker != RENAMED:
        return _HAS_MARKER, [marker]
    return f"({_HAS_MARKER} AND NOT {_STALE})", [marker, LAYOUT, current]


def holds(flex: dict[str, Any], marker: str, current: str) -> bool:
    """The same test on an item's flexible attributes (a stored row's, or ``Item``'s)."""
    if flex.get(marker) is None:
        return False
    if marker != RENAMED:
        return True
    made_under = flex.get(LAYOUT)
    return made_under is None or made_under == current


def parse_unmarked(pattern: str) -> tuple[tuple[str, ...], bool]:
    """Map an ``unmarked:`` pattern to (markers, wants_unmarked).

    ``true``/``process``: lacks any marker; ``rename``/``normalize``: lacks
    that operation's marker; ``false``: has every marker.
    """
    word = pattern.strip().lower()
    if word in _TRUE:
        return MARKER_FIELDS, True
    if word in _FALSE:
        return MARKER_FIELDS, False
    if word in OPERATIONS:
        return OPERATIONS[word].markers, True
    raise InvalidQueryArgumentValueError(pattern, f"one of {_PATTERNS}")


class UnmarkedQuery(FieldQuery[str]):
    """``unmarked:PATTERN``, answered in SQL so it never turns a query slow."""

    def __init__(self, field_name: str, pattern: str, fast: bool = True) -> None:
        super().__init__(field_name, pattern, fast)
        self.markers, self.unmarked = parse_unmarked(pattern)

    def clause(self) -> tuple[str, Sequence[Any]]:
        current = fingerprint()
        parts, args = [], []
        for marker in self.markers:
            sql, values = _holds(marker, current)
            parts.append(f"NOT {sql}" if self.unmarked else sql)
            args += values
        # unmarked: lacks at least one of the markers; else has all of them
        return (" OR " if self.unmarked else " AND ").join(parts), args

    def match(self, obj: Model) -> bool:
        item = cast("Item", obj)  # an item query: markers live on items, not on their album
        current = fingerprint()
        flex = {key: item.get(key, with_album=False) for key in (*self.markers, LAYOUT)}
        present = [holds(flex, marker, current) for marker in self.markers]
        return not all(present) if self.unmarked else all(present)


def unmarked_query(op_name: str) -> UnmarkedQuery:
    """The query for items an operation has not yet done."""
    return UnmarkedQuery("unmarked", op_name)


def _total_changes(tx: Any) -> int:
    return tx.query("SELECT total_changes()")[0][0]


def set_markers(
    lib: Library, item_ids: Iterable[int], fields: Sequence[str], when: float | None = None
) -> dict[str, int]:
    """Give the items each marker they lack, in one transaction.

    Existing markers keep their time (they record when the work was done). A
    ``renamed`` marker is given the current configuration's fingerprint where
    it lacked the marker or its fingerprint was another configuration's:
    marking says the file is where the configuration in force puts it.
    Returns, per marker, how many items newly received it (or, for
    ``renamed``, had it renewed from another configuration's).
    """
    ids = list(item_ids)
    value = types.DATE.to_sql(time.time() if when is None else when)
    current = fingerprint()
    counts = {}
    with atomic(lib) as tx:
        for field in fields:
            before = _total_changes(tx)
            if field == RENAMED:  # first: it counts the items the marker did not hold for
                tx.mutate_many(
                    "INSERT OR REPLACE INTO item_attributes (entity_id, key, value) "
                    f"SELECT id, ?, ? FROM items WHERE id = ? AND NOT {_holds(RENAMED, current)[0]}",
                    [(LAYOUT, current, item_id, RENAMED, LAYOUT, current) for item_id in ids],
                )
                counts[field] = _total_changes(tx) - before
            # Only for items that exist at commit time: an item deleted since the
            # ids were selected must not get an orphan attribute row.
            tx.mutate_many(
                "INSERT OR IGNORE INTO item_attributes (entity_id, key, value) "
                "SELECT id, ?, ? FROM items WHERE id = ?",
                [(field, value, item_id) for item_id in ids],
            )
            if field != RENAMED:
                counts[field] = _total_changes(tx) - before
    _announce(lib, ids, counts)
    return counts


def clear_markers(lib: Library, item_ids: Iterable[int], fields: Sequence[str]) -> dict[str, int]:
    """Remove the markers from the items, in one transaction.

    Returns, per marker, how many items lost it.
    """
    ids = list(item_ids)
    counts = {}
    with atomic(lib) as tx:
        for field in fields:
            before = _total_changes(tx)
            tx.mutate_many(
                "DELETE FROM item_attributes WHERE entity_id = ? AND key = ?",
                [(item_id, field) for item_id in ids],
            )
            counts[field] = _total_changes(tx) - before
            if field == RENAMED:  # its fingerprint goes with it
                tx.mutate_many("DELETE FROM item_attributes WHERE entity_id = ? AND key = ?",
                               [(item_id, LAYOUT) for item_id in ids])
    _announce(lib, ids, counts)
    return counts


def renamed_counts(lib: Library) -> dict[str, int]:
    """``renamed`` markers by what they hold for: ``stale`` (made under
    another configuration), ``unknown`` (no fingerprint: taken as current)."""
    with lib.transaction() as tx:
        row = tx.query(
            "SELECT coalesce(sum(layout.value != ?), 0), coalesce(sum(layout.value IS NULL), 0) "
            "FROM item_attributes AS marker LEFT JOIN item_attributes AS layout "
            "ON layout.entity_id = marker.entity_id AND layout.key = ? WHERE marker.key = ?",
            (fingerprint(), LAYOUT, RENAMED),
        )[0]
    return {"stale": row[0], "unknown": row[1]}


def _announce(lib: Library, ids: Sequence[int], counts: dict[str, int]) -> None:
    """Send ``database_change`` once for a batch that changed something.

    beets sends it per stored model; listeners take a ``model``, so the
    batch's first item stands for the batch (mpdupdate and the other
    ``*update`` plugins only note that something changed; smartplaylist
    checks that one item against its playlists' queries).
    """
    if not any(counts.values()):
        return
    for item_id in ids:  # unknown ids are ignored: the first one that exists
        item = lib.get_item(item_id)
        if item is not None:
            plugins.send("database_change", lib=lib, model=item)
            return
