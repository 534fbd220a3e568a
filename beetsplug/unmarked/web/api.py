"""The HTTP API: jobs, their events (SSE), the unmarked list, and the page.

Views are thin: they validate input, then call the same runner the CLI uses
(``open_job`` + ``run_job`` in a background thread). Job state lives in the
job store, so any server process can answer for any job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import beets
import flask
from beets import context, dbcore
from flask import Blueprint, jsonify, request

from ..events import readable
from ..jobs import ACTIVE, JobConflict, store_for
from ..operations import OPERATIONS, Operation
from ..errors import ConfigError, StoreError
from ..runner import Job, JobConfig, open_job, run_in_background
from ..selection import load_items, select_ids, work_query
from . import sse
from .adopter import serve_library
from .validate import ApiError, body_fields, int_arg, op_arg, whole_number

if TYPE_CHECKING:
    from beets.library import Library

    from .. import UnmarkedPlugin
    from ..jobs import JobStore


class _State:
    plugin: UnmarkedPlugin


state = _State()
blueprint = Blueprint("unmarked", __name__, template_folder="templates",
                      static_folder="static", static_url_path="/unmarked/static")


def _lib() -> Library:
    return flask.g.lib


def _store() -> JobStore:
    return store_for(_lib())


@blueprint.before_request
def _music_dir() -> None:
    """beets expands stored paths with a per-thread context: set it for this thread."""
    context.set_music_dir(_lib().directory)
    serve_library(_lib(), state.plugin)  # this process is a server: it adopts orphaned web jobs


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError) -> Any:
    return jsonify({"error": error.message, **error.extra}), error.status


@blueprint.errorhandler(StoreError)
def _store_error(error: StoreError) -> Any:
    """An unreadable job store: say which file and what to do, not a traceback."""
    return jsonify({"error": str(error)}), 503


def readonly() -> bool:
    return beets.config["web"]["readonly"].get(bool)


def _cross_site_reason() -> str | None:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return f"cross-site request refused (Origin {origin} is not this server, {request.host})"
    return None


def mutating(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse changes on a read-only server or from another site (403)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if readonly():
            raise ApiError(403, "this server is read-only; set `web: {readonly: no}` "
                                "in the beets config to allow changes")
        reason = _cross_site_reason()
        if reason:
            raise ApiError(403, reason)
        return view(*args, **kwargs)

    return guarded


def _job_or_404(job_id: str) -> dict[str, Any]:
    number = whole_number(job_id)
    summary = _store().get(number) if number is not None else None
    if summary is None:
        raise ApiError(404, f"no job {job_id!r}")
    return summary


def _windowed() -> float | None:
    """How long one response may last: unlimited on a threaded server; on a
    non-threaded one (gunicorn sync) short, or the worker is killed."""
    if request.environ.get("wsgi.multithread", False):
        return None
    return state.plugin.config["stream_window"].as_number()


# --- the page ------------------------------------------------------------------

DESCRIPTIONS = {
    "process": "tracks not yet normalized and moved",
    "rename": "tracks not yet moved to the library's naming scheme",
    "normalize": "tracks whose tags are not yet normalized",
}
_LINK = ('<a href="unmarked" style="position:fixed;right:1em;bottom:1em;padding:.4em .8em;'
         'background:#2a62b8;color:#fff;border-radius:4px;font:14px sans-serif">Unmarked tracks</a>')


# The page loads nothing but its own script and style, and must not be framed
# (its buttons change the library).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


@blueprint.get("/unmarked")
def page() -> Any:
    html = flask.render_template("unmarked.html", readonly=readonly(),
                                 operations=list(OPERATIONS.values()), descriptions=DESCRIPTIONS)
    return html, 200, PAGE_HEADERS


@blueprint.after_request
def _no_sniffing(response: flask.Response) -> flask.Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.after_app_request
def _link_from_beets_ui(response: flask.Response) -> flask.Response:
    """A way from beets' own page to ours, without editing beets' files."""
    if request.path == "/" and response.mimetype == "text/html" and not response.direct_passthrough:
        html = response.get_data(as_text=True)
        response.set_data(html.replace("</body>", _LINK + "</body>", 1))
    return response


# --- reading -----------------------------------------------------------------


@blueprint.get("/api/unmarked")
def unmarked() -> Any:
    op = op_arg(request.args.get("op", "process"))
    query = request.args.get("query", "")
    limit = int_arg("limit", 50, 1, 1000)
    offset = int_arg("offset", 0, 0, None)
    ids = select_ids(_lib(), _work_query(op, query, False))
    page = ids[offset:offset + limit]
    loaded = load_items(_lib(), page)
    items = [
        {"id": i.id, "artist": i.artist, "title": i.title, "album": i.album, "path": readable(i.path)}
        for i in (loaded[item_id] for item_id in page if item_id in loaded)
    ]
    return jsonify({"op": op.name, "query": query, "count": len(ids), "items": items})


@blueprint.get("/api/jobs")
def jobs() -> Any:
    return jsonify({"jobs": _store().list()})


@blueprint.get("/api/jobs/<job_id>")
def job(job_id: str) -> Any:
    return jsonify(_job_or_404(job_id))


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
    body = sse.stream(_store(), job_id, after, _windowed())
    response = flask.Response(body, mimetype="text/event-stream", headers=sse.HEADERS)
    response.headers["X-Job-Id"] = str(job_id)
    return response


# --- starting, waiting, cancelling -------------------------------------------------


def _work_query(op: Operation, query: str, force: bool) -> Any:
    try:
        return work_query(_lib(), op, query, force)
    except dbcore.InvalidQueryError as exc:
        raise ApiError(400, f"invalid query: {exc}") from exc


def _job_config() -> JobConfig:
    try:
        return JobConfig.from_plugin(state.plugin.config)
    except ConfigError as exc:  # the server's settings, not the request, are wrong
        raise ApiError(500, str(exc)) from exc


def _start(op: Operation, query: str, force: bool) -> Job:
    """Claim the library and run the job in a background thread of this process."""
    _work_query(op, query, force)  # a bad query is a 400, before anything is claimed
    config = _job_config()  # bad settings: an error naming them, nothing claimed
    try:
        job = open_job(_lib(), op, query, force, "web", config, state.plugin._log)
    except JobConflict as conflict:
        active = conflict.active["job"] if conflict.active else None
        raise ApiError(409, str(conflict), job=active) from conflict
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
    fields = body_fields({"op", "query", "force"}, required={"op"})
    job = _start(op_arg(fields["op"]), fields.get("query", ""), fields.get("force", False))
    return jsonify({"job": job.id, "total": job.total, "events": f"/api/jobs/{job.id}/events"}), 202


@blueprint.post("/api/jobs/<job_id>/cancel")
@mutating
def cancel_job(job_id: str) -> Any:
    summary = _job_or_404(job_id)
    return jsonify(_store().request_cancel(summary["job"]))


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
    store, window = _store(), _windowed()
    deadline = None if window is None else time.monotonic() + window
    while True:
        summary = store.get(job_id)
        if summary["status"] not in ACTIVE:
            return jsonify(summary)
        if deadline is not None and time.monotonic() >= deadline:
            response = jsonify(summary)
            response.headers["Location"] = f"/api/jobs/{job_id}"
            return response, 202
        store.wait_for_events(sse.POLL)
