"""The web extension: endpoints and a page added to beets' own ``web`` app.

beets' ``web`` plugin keeps a module-level Flask ``app``; when both plugins
are enabled, ``register`` adds this blueprint to it, so ``beet web`` (and the
WSGI entry in ``wsgi.py``) serve beets' UI and API plus ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from .. import UnmarkedPlugin


def register(plugin: UnmarkedPlugin) -> None:
    """Attach the blueprint to beets' web app (once per process)."""
    from ..beets_compat import web_app
    from .api import blueprint, state
    from .guard import guard

    app = web_app()

    state.plugin = plugin  # the latest loaded plugin instance supplies config and log
    if blueprint.name not in app.blueprints:
        guard(app)  # Host and cross-site checks for every route, beets' own included
        app.register_blueprint(blueprint)
        _adopt_when_serving(app)


def _adopt_when_serving(app: Flask) -> None:
    """``beet web`` serves through ``app.run``: a server process from its first
    instant, so it adopts orphaned web jobs before any browser connects."""
    serve = app.run

    def run(*args: Any, **kwargs: Any) -> None:
        from .adopter import serve_library
        from .api import state

        serve_library(app.config["lib"], state.plugin)
        serve(*args, **kwargs)

    app.run = run  # type: ignore[method-assign]
