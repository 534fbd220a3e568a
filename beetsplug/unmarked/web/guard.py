"""One guard for the whole served app: beets' own routes and ours.

Jobs need ``web.readonly: no``, which also opens beets' own changes
(``DELETE /item/ID``, ``PATCH /album/ID``, ...). beets checks neither the
``Host`` header nor where a request comes from, so with this plugin loaded a
page on another site could delete items through the user's browser (its
``DELETE`` arrived with ``Origin: http://evil.example`` and was answered 200),
and a DNS-rebound name reached every route. So the checks run before every
request of the app, not only of our blueprint:

- a ``Host`` the server is not meant to be reached by gets 403 (hosts.py);
- a request that changes something (any method but GET, HEAD, OPTIONS) from
  another site gets 403, unless ``web.cors`` lets that origin in;
- its body must stay within MAX_BODY bytes and MAX_DEPTH levels of nesting
  (400 naming the limit): a deep JSON array made Python's parser raise
  RecursionError, a 500, in our views and in beets' ``PATCH``.

Why not Flask's ``TRUSTED_HOSTS``: as of Flask 3.1 / Werkzeug 3.1 it matches
names and ``.suffix`` entries only; it cannot say "any loopback address"
(``127.1.2.3``), "any address when bound to 0.0.0.0", or ``[::1]`` (the port
split cuts an IPv6 literal), all of which this server answers for. One check
that knows them, run for every route, is the single home of the rule.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import beets
from flask import jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from .hosts import allowed
from .validate import MAX_BODY, ApiError, check_body, too_large

if TYPE_CHECKING:
    from flask import Flask

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def guard(app: Flask) -> None:
    """Run ``check`` first, before every request of ``app`` (call once per app)."""
    app.before_request_funcs.setdefault(None, []).insert(0, check)
    app.register_error_handler(ApiError, _as_json)
    if app.config.get("MAX_CONTENT_LENGTH") is None:
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.register_error_handler(RequestEntityTooLarge, too_large)


def check() -> None:
    from .blueprint import state  # the loaded plugin's config, read per request

    allowed_hosts = state.plugin.config["allowed_hosts"].as_str_seq()
    if not allowed(request.host, beets.config["web"]["host"].as_str(), allowed_hosts):
        raise ApiError(403, f"this server does not answer for the host {request.host!r}; if it is meant to, "
                            "add it to `unmarked: {allowed_hosts: [...]}` in the beets config")
    if request.method not in SAFE_METHODS:
        reason = cross_site_reason()
        if reason:
            raise ApiError(403, reason)
        check_body()  # size and depth, for beets' own PATCH bodies as for ours


def _as_json(error: ApiError) -> Any:
    return jsonify({"error": error.message, **error.extra}), error.status


def _cors_origins() -> set[str]:
    """Origins the user let in with ``web.cors`` (beets passes it to flask-cors)."""
    value = beets.config["web"]["cors"].get()
    if not value:
        return set()
    return {o.rstrip("/") for o in re.split(r"[\s,]+", str(value)) if o}


def cross_site_reason() -> str | None:
    """Why this request comes from another site, or None. Browsers send
    ``Sec-Fetch-Site`` and, for anything but a simple GET, ``Origin``."""
    origin = request.headers.get("Origin")
    cors = _cors_origins()
    if origin is not None and ("*" in cors or origin.rstrip("/") in cors):
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site})"
    if origin is not None and _netloc(origin) != request.host:
        return f"cross-site request refused (Origin {origin} is not this server, {request.host})"
    return None


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[": not an origin at all
        return None
