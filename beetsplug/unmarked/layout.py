"""The path configuration a ``renamed`` marker was made under, as a short fingerprint.

A ``renamed`` marker says "this file is at its destination", and the
destination is a function of the item *and* of the configuration: ``paths``,
``directory``, ``replace``, ``asciify_paths`` and the settings beets'
``destination()`` reads besides. So each marker carries the fingerprint of
that configuration (a flexible attribute, ``renamed_layout``), and a marker
whose fingerprint is not the current one proves nothing: the item is
unmarked for rename again (markers.py), and the next rename computes its
destination - moving it if it changed, refreshing the marker if not.

Only what can change a destination is in it: a change of, say, the web
settings must not send every item back to rename. Plugins that add template
functions or fields (``the``, ``inline``, ...) have their section in it,
since a path format may use them. ``art_filename`` is not in it: it moves
album art, never an item's file. The values are read from the configuration
(confuse), the same in every process that reads the same files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import beets
import confuse
from beets import plugins

LAYOUT = "renamed_layout"  # the flexible attribute beside ``renamed``

# Top-level settings that beets' ``Item.destination()`` reads (directly or
# through ``util.legalize_path``, ``%aunique{}`` and the template formatter).
SETTINGS = ("directory", "paths", "replace", "asciify_paths", "path_sep_replace", "max_filename_length",
            "aunique", "per_disc_numbering", "time_format", "item_fields", "album_fields")


def _value(name: str) -> Any:
    view = beets.config[name]
    if name == "directory":
        return view.as_filename()
    try:
        value = view.get()
        return view.flatten() if isinstance(value, dict) else value
    except confuse.ConfigError:
        return None  # absent (``item_fields`` without ``inline``): the same as unset


def _template_plugins() -> dict[str, Any]:
    """The sections of loaded plugins that give path formats functions or fields."""
    found: dict[str, Any] = {}
    for plugin in plugins.find_plugins():
        if getattr(plugin, "template_funcs", None) or getattr(plugin, "template_fields", None) \
                or getattr(plugin, "album_template_fields", None):
            try:
                found[plugin.name] = beets.config[plugin.name].flatten()
            except confuse.ConfigError:
                found[plugin.name] = None
    return dict(sorted(found.items()))


def snapshot() -> dict[str, Any]:
    """The path-relevant configuration in force, as plain JSON values."""
    values = {name: _value(name) for name in SETTINGS}
    values["plugins"] = _template_plugins()
    return json.loads(json.dumps(values, default=str))  # (plain types: comparable with a stored copy)


def fingerprint(values: dict[str, Any] | None = None) -> str:
    """A short hash of ``values`` (default: the configuration in force).

    Order matters where beets' does (the first matching path format wins),
    so dictionaries keep their order; 12 hex digits (48 bits) tell configurations apart.
    """
    text = json.dumps(snapshot() if values is None else values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The names of the settings that differ (``plugins``: a plugin's section)."""
    names = [name for name in SETTINGS if before.get(name) != now.get(name)]
    old, new = before.get("plugins") or {}, now.get("plugins") or {}
    names += [f"{name} (plugin)" for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
    return names
