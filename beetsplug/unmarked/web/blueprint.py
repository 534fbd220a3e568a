"""The extension's one blueprint and the rules every one of its routes obeys.

Each concern adds its routes in a module of its own (page.py, tracks.py,
marking.py, preview.py, jobs_api.py); what they share is here: the request's
library and job store, the read-only refusal of changes, and errors as JSON.
The Host allowlist and the cross-site refusal guard the whole app (guard.py).
"""

from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any

import beets
import flask
from flask import Blueprint, jsonify

from ..beets_compat import bind_music_dir
from ..errors import ConfigError, StoreError
from ..jobs import store_for
from ..runner import JobConfig
from ..transaction import LibraryLockedError
from .adopter import serve_library
from .validate import ApiError

if TYPE_CHECKING:
    from collections.abc import Callable

    from beets.library import Library

    from .. import UnmarkedPlugin
    from ..jobs import JobStore


class _State:
    plugin: UnmarkedPlugin


state = _State()
blueprint = Blueprint("unmarked", __name__, template_folder="templates",
                      static_folder="static", static_url_path="/unmarked/static")


def lib() -> Library:
    return flask.g.lib


def store() -> JobStore:
    return store_for(lib())


def readonly() -> bool:
    return beets.config["web"]["readonly"].get(bool)


def job_config() -> JobConfig:
    try:
        return JobConfig.from_plugin(state.plugin.config)
    except ConfigError as exc:  # the server's settings, not the request, are wrong
        raise ApiError(500, str(exc)) from exc


@blueprint.before_request
def _setup() -> None:
    """Set up the request thread (the Host was checked app-wide: guard.py)."""
    # beets expands stored paths with a per-thread context: set it for this thread.
    bind_music_dir(lib())
    serve_library(lib(), state.plugin)  # this process is a server: it adopts orphaned web jobs


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError) -> Any:
    return jsonify({"error": error.message, **error.extra}), error.status


@blueprint.errorhandler(StoreError)
def _store_error(error: StoreError) -> Any:
    """An unreadable job store: say which file and what to do, not a traceback."""
    return jsonify({"error": str(error)}), 503


@blueprint.errorhandler(LibraryLockedError)
def _library_locked(error: LibraryLockedError) -> Any:
    """Another program holds the library's write lock past beets' timeout."""
    return jsonify({"error": str(error)}), 503


@blueprint.after_request
def _no_sniffing(response: flask.Response) -> flask.Response:
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def mutating(view: Callable[..., Any]) -> Callable[..., Any]:
    """Refuse changes on a read-only server (403); changes from another site
    are refused for every route of the app (guard.py)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if readonly():
            raise ApiError(403, "this server is read-only; set `web: {readonly: no}` "
                                "in the beets config to allow changes")
        return view(*args, **kwargs)

    return guarded
