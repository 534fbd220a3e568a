"""Marking and unmarking from the browser: one marker write for a whole selection.

    POST /api/mark    {"op": "process", "ids": [1, 2, 3]}
    POST /api/unmark  {"op": "rename", "query": "artist:Sade"}
      -> {"op", "matched", "changed": {"normalized": n, "renamed": n}}

A selection is a list of ids or a beets query, never both. An empty query
selects nothing unless ``"all": true`` says "every item" (as ``--all`` does
on the command line). ``"scope"`` (``unmarked``, ``marked``, default ``all``)
narrows a query to the operation's unmarked or marked items, which is what the
page's "select all N matching" means. The write itself is
``markers.set_markers`` / ``clear_markers``: one library transaction for any
number of items, and one ``database_change`` for the batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from flask import jsonify

from .. import markers
from ..operations import MARKER_FIELDS, Operation
from .blueprint import blueprint, lib, mutating
from .queries import select
from .validate import ApiError, body_fields, id_list, op_arg, scope_arg

FIELDS = {"op", "ids", "query", "all", "scope"}
Write = Callable[[Any, Sequence[int], Sequence[str]], dict[str, int]]


@blueprint.post("/api/mark")
@mutating
def mark() -> Any:
    return _write(markers.set_markers)


@blueprint.post("/api/unmark")
@mutating
def unmark() -> Any:
    return _write(markers.clear_markers)


def _write(write: Write) -> Any:
    fields = body_fields(FIELDS, required={"op"})
    op = op_arg(fields["op"])
    ids = selection(op, fields)
    counts = write(lib(), ids, op.markers) if ids else {}
    changed = {field: counts.get(field, 0) for field in MARKER_FIELDS}
    return jsonify({"op": op.name, "matched": len(ids), "changed": changed})


def selection(op: Operation, fields: dict[str, Any]) -> list[int]:
    """The ids a mark/unmark body selects (unknown ids left out)."""
    if "ids" in fields:
        if "query" in fields or "all" in fields or "scope" in fields:
            raise ApiError(400, 'give either "ids" or a "query" (with "all" and "scope"), not both')
        return existing(id_list(fields["ids"]))
    query = fields.get("query", "")
    scope = scope_arg(fields.get("scope"), "all")
    if not query.strip() and not fields.get("all", False):
        return []  # an empty query is not "everything" unless asked for
    return select(op, query, scope)


def existing(ids: list[int]) -> list[int]:
    """Those of the ids that are items of the library, in one statement."""
    if not ids:
        return []
    with lib().transaction() as tx:
        rows = tx.query("SELECT id FROM items WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),))
    found = {row[0] for row in rows}
    return [item_id for item_id in ids if item_id in found]
