"""What an operation would do to one page of items, before anything runs.

    GET /api/preview?op=process&query=Q&limit=50&offset=0
      -> {"op", "query", "count", "items": [{"id", "file", "dest", "changes", "error"}]}

The same engine as a real run, in pretend mode (``beet process-unmarked
--pretend``): the same rules, ``destination()``, unique names; each file then
gets the plan's read-only checks (plan_api.preflight), so a damaged or
immutable file shows the failure it would meet. It claims
nothing and records nothing: no job row, no file touched, and album changes
(path formats read album fields) are stored in a transaction that is rolled
back. Only one page is computed, so the first page of any library answers
as fast as fifty items take.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from ..beets_compat import path_format_chooser
from ..engine import Engine, ItemResult
from .blueprint import blueprint, job_config, lib, state
from .plan_api import Collect, preflight
from .queries import select
from .validate import ApiError, int_arg, op_arg, scope_arg, text

MAX_PAGE = 200


@blueprint.get("/api/preview")
def preview() -> Any:
    op = op_arg(request.args.get("op", "process"))
    query = text("query", request.args.get("query", ""))
    scope = scope_arg(request.args.get("scope"), "unmarked")
    limit = int_arg("limit", 50, 1, MAX_PAGE)
    offset = int_arg("offset", 0, 0, None)
    config = job_config()
    ids = select(op, query, scope)
    page = ids[offset:offset + limit]
    sink = Collect()
    engine = Engine(lib(), op, rules=config.rules, settings=config.settings, log=state.plugin._log,
                    force=scope != "unmarked", pretend=True)
    summary = engine.run(page, sink)
    if summary.status == "failed":
        raise ApiError(503, f"the preview could not be computed: {summary.error}")
    by_id = {result.item_id: result for result in sink.results}
    chooser = path_format_chooser(lib())
    items = [_shown(by_id[item_id], chooser) for item_id in page if item_id in by_id]
    return jsonify({"op": op.name, "query": query, "scope": scope, "count": len(ids), "items": items})


def _shown(result: ItemResult, chooser: Any) -> dict[str, Any]:
    """The item as the page shows it; the failure the file would meet, found
    by the plan's read-only checks, as its error."""
    cause, error = (None, result.error) if result.skipped else preflight(result, chooser)
    if cause == "destination_taken":  # not a failure: beets' numbered name, shown as the destination
        error = None
    return {"id": result.item_id, "file": result.file, "dest": result.dest, "changes": result.changes,
            "error": error, "skipped": result.skipped}
