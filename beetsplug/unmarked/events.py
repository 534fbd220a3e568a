"""The three event payloads (start, item, done), built in one place.

These are the JSON objects of the SSE ``data:`` lines (the README's "Web API"
section lists their fields); the job store numbers them, the web streams
them, the page renders them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import ItemResult, Summary


def start_event(job: int, op: str, total: int) -> dict[str, Any]:
    return {"type": "start", "job": job, "op": op, "total": total}


def item_event(job: int, current: int, total: int, result: ItemResult) -> dict[str, Any]:
    return {
        "type": "item",
        "job": job,
        "current": current,
        "total": total,
        "item_id": result.item_id,
        "file": result.file,
        "dest": result.dest,
        "success": result.success,
        "error": result.error,
        "changes": result.changes,
        "skipped": result.skipped,
        **({"undo": result.undo} if result.undo is not None else {}),
    }


def failure_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A failed item as listed in ``done.results`` and the summary's ``errors``."""
    return {"item_id": item["item_id"], "file": item["file"], "error": item["error"]}


def done_event(job: int, summary: Summary, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The last event of a job. ``results`` lists its failed items (from the
    job's record, which also holds those of a run this one resumed)."""
    return {
        "type": "done",
        "done": True,
        "job": job,
        "status": summary.status,
        "total": summary.total,
        "succeeded": summary.succeeded,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "results": results,
        "error": summary.error,
    }
