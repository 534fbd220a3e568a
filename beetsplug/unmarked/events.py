"""The three event payloads (start, item, done), built in one place.

These are the JSON objects of the SSE ``data:`` lines (see the SPEC); the job
store numbers them, the web streams them, the page renders them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import ItemResult


def readable(value: str | bytes) -> str:
    """A path or message as clean text: bytes that are not UTF-8 (a Latin-1
    file name, say) become U+FFFD instead of lone surrogates in JSON."""
    raw = value if isinstance(value, bytes) else os.fsencode(value)
    return raw.decode("utf-8", "replace")


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
    }


def failure_entry(item: dict[str, Any]) -> dict[str, Any]:
    """A failed item as listed in ``done.results`` and the summary's ``errors``."""
    return {"item_id": item["item_id"], "file": item["file"], "error": item["error"]}


def done_event(job: int, status: str, total: int, succeeded: int, failed: int, skipped: int,
               results: list[dict[str, Any]], error: str | None = None) -> dict[str, Any]:
    return {
        "type": "done",
        "done": True,
        "job": job,
        "status": status,
        "total": total,
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "results": results,
        "error": error,
    }
