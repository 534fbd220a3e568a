"""A WSGI entry for gunicorn: beets' web UI and API, plus this extension.

    gunicorn 'beetsplug.unmarked.wsgi:create_app()'
    gunicorn 'beetsplug.unmarked.wsgi:create_app(config="/path/config.yaml")'

beets' ``web`` plugin only configures its app inside ``beet web``; this does
the same from the user's beets configuration (BEETSDIR honoured) without
starting Flask's development server.
"""

from __future__ import annotations

import logging
from typing import Any

import beets
from beets import plugins, ui
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


def _configure_web_app(app: Flask, lib: Any) -> None:
    """What ``beet web`` does to beets' app before serving, minus the server."""
    web = beets.config["web"]
    app.config["lib"] = lib
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    app.config["INCLUDE_PATHS"] = web["include_paths"].get(bool)
    app.config["READONLY"] = web["readonly"].get(bool)
    if web["cors"].get():
        from flask_cors import CORS

        app.config["CORS_ALLOW_HEADERS"] = "Content-Type"
        app.config["CORS_RESOURCES"] = {r"/*": {"origins": web["cors"].get(str)}}
        CORS(app, supports_credentials=web["cors_supports_credentials"].get(bool))
    if web["reverse_proxy"].get(bool):
        from beetsplug.web import ReverseProxied

        app.wsgi_app = ReverseProxied(app.wsgi_app)  # type: ignore[method-assign]


def create_app(config: str | None = None) -> Flask:
    """The beets web app with the unmarked extension, for any WSGI server."""
    _load_config(config)
    _log_to_stderr()
    plugins.load_plugins()  # the unmarked plugin registers its blueprint on `pluginload`
    lib = ui._open_library(beets.config)  # beets' own opening, with its error messages
    plugins.send("library_opened", lib=lib)
    from beetsplug.web import app

    _configure_web_app(app, lib)
    from .web.adopter import serve_library
    from .web.api import state

    serve_library(lib, state.plugin)  # adopt orphaned web jobs before any request
    return app
