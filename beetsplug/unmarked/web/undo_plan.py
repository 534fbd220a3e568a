"""What undoing a job would do, summarised before it starts: the confirmation's numbers.

    GET /api/jobs/ID/undo
      -> {"job", "count", "moves", "retags", "unchanged",
          "failures": {"changed", "destination_taken", "missing", "unrecorded"},
          "sample": [{"id", "file", "dest", "changes", "error"}], "complete": true}
      -> 404 no such job; 400 {"error"} when it cannot be undone (reversal.NotUndoable)

Allowed on a read-only server: it changes nothing. Each item of the job's
record is judged as the undo's planner will judge it (``Reverse.state``),
against the library as it is now, read in one transaction: as the job left
it, it is put back (a move if the job moved it, a retag if it changed
fields), unless its file is missing or another file holds the name it goes
back to; as the job found it, it is unchanged; otherwise it was changed since
and is left alone; one whose record does not say what the job changed
(``unrecorded``: its run stopped between the commit and the report) is left
alone too. The album fields the job changed are not counted: the undo puts
back those still as the job left them, at its end. The answer has the
forward plan's shape (plan_api.py), so the page shows both with one
confirmation.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from beets import util
from flask import jsonify

from .. import stored
from ..moves import second_name
from ..results import readable
from ..reversal import AS_BEFORE, CHANGED, NotUndoable, reversal_of
from .blueprint import blueprint, lib, store
from .jobs_api import _job_or_404
from .plan_api import SAMPLE, Plan
from .validate import ApiError

if TYPE_CHECKING:
    from beets.library import Library

    from ..reversal import Reversal

FAILURES = ("changed", "destination_taken", "missing", "unrecorded")


def summarise_undo(library: Library, reversal: Reversal, sample: int = SAMPLE) -> Plan:
    """What an undo of ``reversal.job`` would do to each item it covers, counted.

    The same judgement as the undo's planner (planner.Planner._begin_undo and
    _place_back), without the engine: the undo needs no path format or rule,
    only the record and the library's rows, so one read answers for all.
    """
    ids = reversal.order()  # as the undo goes: the last done first
    with library.transaction() as tx:
        rows = stored.rows(tx, ids)
    plan = Plan(failures=dict.fromkeys(FAILURES, 0))
    promised: set[bytes] = set()  # names an earlier item goes back to
    leaving: set[bytes] = set()  # names an earlier item leaves (free by the time a later one needs them)
    for item_id in ids:
        cause, entry = _judge(library, reversal, item_id, rows.get(item_id), promised, leaving)
        if cause == "unchanged":
            plan.unchanged += 1
            continue
        if cause:
            plan.failures[cause] += 1
        else:
            plan.moves += entry["dest"] != entry["file"]
            plan.retags += bool(entry["changes"])
        if len(plan.sample) < sample or (cause and not any(s["error"] for s in plan.sample)):
            plan.sample.append(entry)
    return plan


def _judge(library: Library, reversal: Reversal, item_id: int, raw: stored.Row | None,
           promised: set[bytes], leaving: set[bytes]) -> tuple[str | None, dict[str, Any]]:
    """(cause, sample entry) for one item: cause None (put back), "unchanged", or a failure."""
    job, plan = reversal.job, reversal.items[item_id]
    entry: dict[str, Any] = {"id": item_id, "file": None, "dest": None, "changes": {}, "error": None}
    if raw is None:  # (the undo's planner looks at this first)
        entry["error"] = f"changed since job {job}: item {item_id} was removed from the library"
        return "changed", entry
    item = stored.model(library, raw)
    entry["file"] = entry["dest"] = readable(item.path)
    if plan is None:
        entry["error"] = (f"job {job} did not record what it changed here (its run stopped between the commit "
                          "and the report); left as it is")
        return "unrecorded", entry
    entry["dest"] = readable(plan.src)
    entry["changes"] = {key: [new, old] for key, (old, new) in plan.changes.items()}
    state, what = plan.state(item)
    if state == AS_BEFORE:
        return "unchanged", entry
    if state == CHANGED:
        entry["error"] = f"changed since job {job}: {item.title} ({entry['file']}: {what}); left as it is"
        return "changed", entry
    if not os.path.exists(util.syspath(item.path)):
        entry["error"] = f"file not found: {entry['file']}"
        return "missing", entry
    if plan.src != item.path:
        taken = plan.src in promised or (os.path.lexists(util.syspath(plan.src)) and plan.src not in leaving
                                         and not second_name(item.path, plan.src))
        promised.add(plan.src)
        if taken:
            entry["error"] = f"{entry['file']}: cannot move it back to {entry['dest']}: another file is there"
            return "destination_taken", entry
        leaving.add(item.path)
    return None, entry


@blueprint.get("/api/jobs/<job_id>/undo")
def undo_plan(job_id: str) -> Any:
    """The undo's plan, for the confirmation (changes nothing: allowed read-only)."""
    summary = _job_or_404(job_id)
    try:
        reversal = reversal_of(store(), summary["job"])
    except NotUndoable as exc:
        raise ApiError(400, str(exc)) from exc
    plan = summarise_undo(lib(), reversal)
    return jsonify({"job": summary["job"], "count": len(reversal.items), **plan.as_json(), "complete": True})
