"""A WSGI entry for gunicorn: beets' web UI and API, plus this extension.

    gunicorn 'beetsplug.unmarked.wsgi:create_app()'
    gunicorn 'beetsplug.unmarked.wsgi:create_app(config="/path/config.yaml")'

beets' ``web`` plugin only configures its app inside ``beet web``; this does
the same from the user's beets configuration (BEETSDIR honoured) without
starting Flask's development server.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import beets
from beets import plugins

from .beets_compat import configure_web_app, open_library, web_app

if TYPE_CHECKING:
    from flask import Flask

REQUIRED_PLUGINS = ("web", "unmarked")


def _load_config(config: str | None) -> None:
    beets.config.read()
    if config:
        beets.config.set_file(config)
    names = beets.config["plugins"].as_str_seq()
    beets.config["plugins"] = list(names) + [p for p in REQUIRED_PLUGINS if p not in names]


def _log_to_stderr() -> None:
    """beets logs through its own logger; under gunicorn nobody set it up."""
    log = beets.logging.getLogger("beets")
    if not log.handlers:
        log.addHandler(logging.StreamHandler())
        log.setLevel(logging.DEBUG if beets.config["verbose"].get(int) else logging.INFO)


def create_app(config: str | None = None) -> Flask:
    """The beets web app with the unmarked extension, for any WSGI server."""
    _load_config(config)
    _log_to_stderr()
    plugins.load_plugins()  # the unmarked plugin registers its blueprint on `pluginload`
    lib = open_library(beets.config)  # beets' own opening, with its error messages
    plugins.send("library_opened", lib=lib)
    app = web_app()
    configure_web_app(app, lib)
    from .web.adopter import serve_library
    from .web.api import state

    serve_library(lib, state.plugin)  # adopt orphaned web jobs before any request
    return app
