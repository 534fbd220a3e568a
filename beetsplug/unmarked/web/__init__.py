"""The web extension: endpoints and a page added to beets' own ``web`` app.

beets' ``web`` plugin keeps a module-level Flask ``app``; when both plugins
are enabled, ``register`` adds this blueprint to it, so ``beet web`` (and the
WSGI entry in ``wsgi.py``) serve beets' UI and API plus ours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .. import UnmarkedPlugin


def register(plugin: UnmarkedPlugin) -> None:
    """Attach the blueprint to beets' web app (once per process)."""
    from beetsplug.web import app

    from .api import blueprint, state

    state.plugin = plugin  # the latest loaded plugin instance supplies config and log
    if blueprint.name not in app.blueprints:
        app.register_blueprint(blueprint)
