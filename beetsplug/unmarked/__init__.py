"""beets-unmarked: tidy each track once and remember which tracks are done.

The plugin object only wires things up: config defaults, the marker types and
the ``unmarked:`` query, the commands, the import hook and, when beets' own
``web`` plugin is enabled too, the web extension.
"""

from __future__ import annotations

from typing import Any

from beets.plugins import BeetsPlugin

from . import markers

CONFIG_DEFAULTS: dict[str, Any] = {
    # Import hook: process items as they are imported.
    "auto": False,
    # Text fields the normalize rules touch (single- and multi-valued).
    "fields": [
        "title",
        "artist",
        "artists",
        "artist_sort",
        "artists_sort",
        "artist_credit",
        "album",
        "albumartist",
        "albumartists",
        "albumartist_sort",
        "albumartists_sort",
        "albumartist_credit",
        "composers",
        "composer_sort",
        "lyricists",
        "arrangers",
        "genres",
        "grouping",
        "disctitle",
        "work",
    ],
    # Rules, each on or off.
    "whitespace": True,
    "unicode_nfc": True,
    "feat": True,
    "feat_format": "feat.",
    "quotes": False,
    "titlecase": False,
    "titlecase_fields": ["title", "album"],
    # Commit bounds: one library transaction per this many items or seconds.
    "batch_size": 200,
    "batch_seconds": 1.0,
    # Web: how long one SSE response may last on a server without threads
    # (gunicorn's sync worker); the browser resumes with Last-Event-ID.
    "stream_window": 1.0,
}


class UnmarkedPlugin(BeetsPlugin):
    """Markers per item and operation, and the commands that use them."""

    item_types = markers.ITEM_TYPES
    item_queries = {"unmarked": markers.UnmarkedQuery}

    def __init__(self) -> None:
        super().__init__()
        self.config.add(CONFIG_DEFAULTS)

    def commands(self) -> list[Any]:
        from .cli import build_commands

        return build_commands(self)
