"""Jobs over HTTP: start, list, read, follow (SSE), cancel, and a job's record.

Views are thin: they validate input, then call the same runner the CLI uses
(``open_job`` + ``run_job`` in a background thread). Job state lives in the
job store, so any server process can answer for any job.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import flask
from flask import jsonify, request

from ..jobs import ACTIVE, JobConflict
from ..operations import OPERATIONS, Operation
from ..reversal import NotUndoable
from ..runner import Job, open_job, open_undo, run_in_background
from . import sse
from .blueprint import blueprint, job_config, lib, mutating, state, store
from .marking import existing
from .queries import check, query_errors_as_400
from .validate import ApiError, body_fields, choice_arg, id_list, int_arg, op_arg, whole_number

ITEM_STATUSES = ("failed", "succeeded", "skipped")
WAIT_LIMIT = 1.0  # seconds a waiting POST /api/<op>-unmarked holds a sync worker


def _job_or_404(job_id: str) -> dict[str, Any]:
    number = whole_number(job_id)
    summary = store().get(number) if number is not None else None
    if summary is None:
        raise ApiError(404, f"no job {job_id!r}")
    return summary


def _wait_limit() -> float | None:
    """How long a waiting call may hold its worker: unlimited on a threaded
    server (one caller, one thread); on a non-threaded one (gunicorn sync)
    short, or the worker is killed at --timeout and others starve."""
    if request.environ.get("wsgi.multithread", False):
        return None
    return WAIT_LIMIT


# --- reading -----------------------------------------------------------------


@blueprint.get("/api/jobs")
def jobs() -> Any:
    return jsonify({"jobs": store().list()})


@blueprint.get("/api/jobs/<job_id>")
def job(job_id: str) -> Any:
    return jsonify(_job_or_404(job_id))


@blueprint.get("/api/jobs/<job_id>/items")
def job_items(job_id: str) -> Any:
    """A job's per-item record, one page of it; without ``status`` failures first."""
    summary = _job_or_404(job_id)
    status = choice_arg("status", ITEM_STATUSES)
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, None)
    count, items = store().item_events(summary["job"], status=status, limit=limit, offset=offset)
    return jsonify({"job": summary["job"], "status": status, "count": count, "items": items,
                    "compacted": summary.get("compacted", False)})


@blueprint.get("/api/jobs/<job_id>/events")
def job_events(job_id: str) -> Any:
    summary = _job_or_404(job_id)
    raw = request.headers.get("Last-Event-ID", request.args.get("after", "0"))
    after = whole_number(raw)
    if after is None:
        raise ApiError(400, f"Last-Event-ID must be an event id (a whole number), not {raw!r}")
    if summary["status"] not in ACTIVE and after >= summary["last_event"]:
        return "", 204  # all seen and the job is over: tells EventSource to stop reconnecting
    return _event_stream(summary["job"], after)


def _event_stream(job_id: int, after: int) -> flask.Response:
    # Everything the generator needs is captured now: it runs after the view returns.
    config = state.plugin.config
    body = sse.stream(store(), job_id, after=after, window=config["stream_window"].as_number(),
                      retry=config["stream_retry"].as_number())
    response = flask.Response(body, mimetype="text/event-stream", headers=sse.HEADERS)
    response.headers["X-Job-Id"] = str(job_id)
    return response


# --- starting, waiting, cancelling -------------------------------------------------


def _start(op: Operation, query: str, force: bool, ids: list[int] | None = None) -> Job:
    """Claim the library and run the job in a background thread of this process.

    Whatever the request got wrong (a malformed query, one too big for
    SQLite) is a 400 before or during the claim, and leaves no job row: the
    runner selects the items before it creates the row. With ``ids`` the job
    covers exactly those items (the ones the library has).
    """
    if ids is None:
        check(op, query, force)  # a malformed query is a 400 before anything is claimed
    config = job_config()  # bad settings: an error naming them, nothing claimed
    try:
        with query_errors_as_400(query):
            job = open_job(lib(), op, query, force=force, origin="web", config=config,
                           log=state.plugin._log, ids=ids)
    except JobConflict as conflict:
        raise _conflict(conflict) from conflict
    return _in_background(job)


def _conflict(conflict: JobConflict) -> ApiError:
    active = conflict.active["job"] if conflict.active else None
    return ApiError(409, str(conflict), job=active)


def _in_background(job: Job) -> Job:
    """Run a claimed job in a background thread of this process (it outlives the request)."""
    try:
        threading.Thread(target=run_in_background, args=(job, state.plugin._log),
                         name=f"unmarked-job-{job.id}", daemon=True).start()
    except BaseException as exc:
        job.close(exc)
        raise
    return job


@blueprint.post("/api/jobs")
@mutating
def create_job() -> Any:
    """A job over a query's items, or over exactly the ``ids`` given (as /api/mark takes them)."""
    fields = body_fields({"op", "query", "force", "ids"}, required={"op"})
    ids = None
    if "ids" in fields:
        if "query" in fields:
            raise ApiError(400, 'give either "ids" or a "query", not both')
        ids = existing(id_list(fields["ids"]))
        if not ids:
            raise ApiError(400, "none of the ids is an item of the library")
    job = _start(op_arg(fields["op"]), fields.get("query", ""), fields.get("force", False), ids)
    return jsonify({"job": job.id, "total": job.total, "events": f"/api/jobs/{job.id}/events"}), 202


@blueprint.post("/api/jobs/<job_id>/undo")
@mutating
def undo_job(job_id: str) -> Any:
    """A job that puts back what job ``job_id`` changed (reversal.py): 202
    as for ``POST /api/jobs``; 400 if it cannot be undone (still running,
    compacted), 409 while another job runs."""
    summary = _job_or_404(job_id)
    if summary["status"] in ACTIVE:
        raise ApiError(400, f"job {summary['job']} is still {summary['status']}; undo it once it has ended")
    config = job_config()
    try:
        job = open_undo(lib(), summary["job"], origin="web", config=config, log=state.plugin._log)
    except JobConflict as conflict:
        raise _conflict(conflict) from conflict
    except NotUndoable as exc:
        raise ApiError(400, str(exc)) from exc
    _in_background(job)
    return jsonify({"job": job.id, "total": job.total, "events": f"/api/jobs/{job.id}/events",
                    "undoes": summary["job"]}), 202


@blueprint.post("/api/jobs/<job_id>/cancel")
@mutating
def cancel_job(job_id: str) -> Any:
    summary = _job_or_404(job_id)
    return jsonify(store().request_cancel(summary["job"]))


@blueprint.post("/api/<name>-unmarked")
@mutating
def run_operation(name: str) -> Any:
    """The seed-compatible call: stream the job's events, or wait for its summary."""
    if name not in OPERATIONS:
        raise ApiError(404, f"no operation {name!r} (expected one of: {', '.join(OPERATIONS)})")
    fields = body_fields({"query", "force"})
    job = _start(OPERATIONS[name], fields.get("query", ""), fields.get("force", False))
    if request.args.get("stream", "").lower() in ("1", "true", "yes"):
        return _event_stream(job.id, 0)
    return _wait_for(job.id)


def _wait_for(job_id: int) -> Any:
    """200 with the summary when the job ends. A non-threaded server cannot
    wait long: it answers 202 with the running job's summary instead."""
    jobs, window = store(), _wait_limit()
    deadline = None if window is None else time.monotonic() + window
    while True:
        summary = jobs.get(job_id)
        if summary is None:  # pruned meanwhile by another process's budget
            raise ApiError(404, f"no job {job_id!r}")
        if summary["status"] not in ACTIVE:
            return jsonify(summary)
        if deadline is not None and time.monotonic() >= deadline:
            response = jsonify(summary)
            response.headers["Location"] = f"/api/jobs/{job_id}"
            return response, 202
        jobs.wait_for_events(sse.POLL)
