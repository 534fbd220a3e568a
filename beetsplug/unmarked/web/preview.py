"""What an operation would do to one page of items, before anything runs.

    GET /api/preview?op=process&query=Q&limit=50&offset=0
      -> {"op", "query", "count", "items": [{"id", "file", "dest", "changes", "error"}]}

The same engine as a real run, in pretend mode (``beet process-unmarked
--pretend``): the same rules, ``destination()``, unique names. It claims
nothing and records nothing: no job row, no file touched, and album changes
(path formats read album fields) are stored in a transaction that is rolled
back. Only one page is computed, so the first page of any library answers
as fast as fifty items take.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify, request

from ..engine import Engine, ItemResult, Summary
from .blueprint import blueprint, job_config, lib, state
from .queries import select
from .validate import ApiError, int_arg, op_arg, scope_arg, text

MAX_PAGE = 200


class Collect:
    """A sink that keeps the results of a pretend run."""

    def __init__(self) -> None:
        self.results: list[ItemResult] = []

    def start(self, total: int) -> None:
        pass

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        self.results.extend(result for _, result in numbered)

    def done(self, summary: Summary) -> None:
        pass


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
    items = [_shown(by_id[item_id]) for item_id in page if item_id in by_id]
    return jsonify({"op": op.name, "query": query, "scope": scope, "count": len(ids), "items": items})


def _shown(result: ItemResult) -> dict[str, Any]:
    return {"id": result.item_id, "file": result.file, "dest": result.dest, "changes": result.changes,
            "error": result.error, "skipped": result.skipped}
