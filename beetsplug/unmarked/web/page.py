"""The browser page, and a link to it from beets' own page."""

from __future__ import annotations

from typing import Any

import flask
from flask import request

from ..operations import OPERATIONS
from .blueprint import blueprint, readonly

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


@blueprint.after_app_request
def _link_from_beets_ui(response: flask.Response) -> flask.Response:
    """A way from beets' own page to ours, without editing beets' files."""
    if request.path == "/" and response.mimetype == "text/html" and not response.direct_passthrough:
        html = response.get_data(as_text=True)
        response.set_data(html.replace("</body>", _LINK + "</body>", 1))
    return response
