"""The tracks of an operation and query, a page at a time.

    GET /api/unmarked?op=process&query=Q&limit=50&offset=0[&scope=unmarked|marked|all]
      -> {"op", "query", "count", "items": [{"id", "artist", "title", "album", "path"}]}

``scope`` (an addition; default ``unmarked``, the contract's meaning) lets
the page list the items an operation has done, to unmark them.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from ..results import readable
from ..selection import load_items
from .blueprint import blueprint, lib
from .queries import select
from .validate import int_arg, op_arg, scope_arg, text


@blueprint.get("/api/unmarked")
def unmarked() -> Any:
    op = op_arg(request.args.get("op", "process"))
    query = text("query", request.args.get("query", ""))
    scope = scope_arg(request.args.get("scope"), "unmarked")
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, None)
    ids = select(op, query, scope)
    page = ids[offset:offset + limit]
    loaded = load_items(lib(), page)
    items = [
        {"id": i.id, "artist": i.artist, "title": i.title, "album": i.album, "path": readable(i.path)}
        for i in (loaded[item_id] for item_id in page if item_id in loaded)
    ]
    return jsonify({"op": op.name, "query": query, "scope": scope, "count": len(ids), "items": items})
