"""A WSGI entry for gunicorn: beets' web UI and API, plus this extension.

    gunicorn 'beetsplug.unmarked.wsgi:create_app()'
    gunicorn 'beetsplug.unmarked.wsgi:create_app(config="/path/config.yaml")'

beets' ``web`` plugin only configures its app inside ``beet web``; this does
the same from the user's beets configuration (BEETSDIR honoured) without
starting Flask's development server.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import beets
from beets import plugins

from .beets_compat import configure_web_app, open_library, web_app
from .errors import ConfigError

if TYPE_CHECKING:
    from types import FrameType

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
    try:
        plugins.load_plugins()  # the unmarked plugin checks its config and registers its blueprint on `pluginload`
    except ConfigError as exc:
        raise _load_error(str(exc)) from None
    lib = open_library(beets.config)  # beets' own opening, with its error messages
    plugins.send("library_opened", lib=lib)
    app = web_app()
    configure_web_app(app, lib)
    from .web.adopter import serve_library
    from .web.api import state

    # Adopt orphaned web jobs before any request: here, or in each worker
    # gunicorn forks when it loaded the app first (--preload).
    serve_library(lib, state.plugin, in_children_only=_in_prefork_master())
    return app


def _load_error(message: str) -> Exception:
    """A bad setting, said in one line: gunicorn prints an AppImportError's
    message (no traceback) and stops instead of booting worker after worker."""
    try:
        from gunicorn.errors import AppImportError
    except ImportError:  # another WSGI server
        return RuntimeError(message)
    return AppImportError(f"error: {message}")


def _in_prefork_master() -> bool:
    """True when gunicorn's arbiter (not a worker) is loading the app: with
    ``--preload`` it does so before it forks the workers. Read from the call
    stack, the one place that says it: a worker's stack has gunicorn's worker
    frames on top of the arbiter's."""
    frame: FrameType | None = sys._getframe()
    modules = set()
    while frame is not None:
        modules.add(str(frame.f_globals.get("__name__", "")))
        frame = frame.f_back
    return "gunicorn.arbiter" in modules and not any(m.startswith("gunicorn.workers") for m in modules)
