"""The shortcuts of a run's hot path give beets' own results (issue 12).

Each shortcut is checked against the beets call it replaces, on the installed
release: ``store_many`` against ``Model.store``, ``path_format_chooser``
against ``Item.destination``, ``write_fields`` against ``Item.write`` (same
tags in the file, same errors), ``listens`` against a plugin that listens.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from beets import plugins
from beets.library import Item, ReadError
from mediafile import MediaFile

from beetsplug.unmarked import beets_compat as compat
from beetsplug.unmarked.files import write_fields

from .libenv import LibraryEnv

pytestmark = pytest.mark.fast

# --- store_many == store() ------------------------------------------------------


def _rows(env: LibraryEnv) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Item rows and flexible attributes, ids counted from the first item (two
    runs on fresh rows get different ids)."""
    conn = sqlite3.connect(env.settings["library"])
    conn.row_factory = sqlite3.Row
    try:
        items = [dict(row) for row in conn.execute("SELECT * FROM items ORDER BY id")]
        first = items[0]["id"]
        for row in items:
            row["id"] -= first
            del row["added"]  # when each was made
        flex = [(row["entity_id"] - first, row["key"], row["value"]) for row in
                conn.execute("SELECT entity_id, key, value FROM item_attributes ORDER BY entity_id, key")]
        return items, flex
    finally:
        conn.close()


def _edit(items: list[Item]) -> None:
    """A mix of what a run changes: fixed fields, new, changed and removed flexible attributes."""
    items[0].title = "New title"
    items[0]["normalized"] = 12.5
    items[1].update({"album": "Other", "year": 1999, "mood": "calm"})
    del items[2]["mood"]
    items[2]["renamed"] = 3.0
    items[3].path = b"/elsewhere/x.mp3"  # bytes column


def test_store_many_writes_what_store_writes(env: LibraryEnv) -> None:
    def fresh() -> list[Item]:
        for item in env.lib.items():
            item.remove()
        made = []
        for n in range(5):
            item = Item(title=f"T{n}", album="A", year=2000 + n, path=os.fsencode(env.lib_path / f"{n}.mp3"))
            item["mood"] = "happy"
            env.lib.add(item)
            made.append(item)
        return made

    items = fresh()
    _edit(items)
    for item in items:
        item.store()
    by_store = _rows(env)

    items = fresh()
    _edit(items)
    heard: list[int] = []

    def changed(lib: Any, model: Any) -> None:
        heard.append(model.id)

    plugins.BeetsPlugin.listeners["database_change"].append(changed)
    try:
        with env.lib.transaction() as tx:
            compat.store_many(tx, items)
    finally:
        plugins.BeetsPlugin.listeners["database_change"].remove(changed)
    by_many = _rows(env)

    assert by_many == by_store
    assert heard == [item.id for item in items], "database_change once per model, as store() sends it"
    assert all(not item._dirty for item in items), "dirty flags cleared"


# --- path_format_chooser == destination() -----------------------------------------

PATH_FORMATS = {
    "default": "$albumartist/$album/$track $title",
    "singleton": "Singles/$artist - $title",
    "comp": "Compilations/$album/$title",
    "artist:Special": "Special/$title",
    "year:..1990": "Old/$year/$title",
}


def test_the_chooser_picks_the_path_format_destination_picks(env: LibraryEnv) -> None:
    env.configure(paths=PATH_FORMATS, replace={"[?]": "_"})
    specs = [
        {"title": "Plain?", "artist": "A", "album": "Alb", "albumartist": "A"},
        {"title": "Special one", "artist": "Special", "album": "Alb"},
        {"title": "Oldie", "artist": "B", "album": "Alb", "year": 1970},
        {"title": "Comp", "artist": "C", "album": "Hits", "comp": True},
        {"title": "Loose", "artist": "D"},
    ]
    items = []
    for n, spec in enumerate(specs):
        item = Item(path=os.fsencode(env.lib_path / f"in{n}.mp3"), **spec)
        env.lib.add(item)
        items.append(item)
    env.lib.add_album(items[:2])
    env.lib.add_album([items[3]])
    with compat.music_dir(env.lib):
        choose = compat.path_format_chooser(env.lib)
        got = [choose(env.lib.get_item(item.id)) for item in items]
        want = [env.lib.get_item(item.id).destination() for item in items]
    assert got == want
    assert len(set(got)) == len(got)


# --- write_fields == Item.write, for the fields it is given ------------------------


def test_write_fields_writes_the_tags_item_write_writes(env: LibraryEnv) -> None:
    for ext in ("mp3", "flac", "ogg"):
        a = env.add_track(f"a.{ext}", {"title": "Old", "artist": "Someone"})
        b = env.add_track(f"b.{ext}", {"title": "Old", "artist": "Someone"})
        for item in (a, b):
            item.title, item.album = "New  title feat. X", "Ålbum"
        a.write()
        write_fields(b.path, {"title": b.title, "album": b.album}, id3v23=False)
        fa, fb = MediaFile(a.path), MediaFile(b.path)
        for field in ("title", "album", "artist"):
            assert getattr(fa, field) == getattr(fb, field), (ext, field)


def test_write_fields_raises_beets_errors_and_leaves_the_file(env: LibraryEnv, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(os.urandom(3000))
    before = junk.read_bytes()
    with pytest.raises(ReadError) as caught:
        write_fields(os.fsencode(junk), {"title": "x"}, id3v23=False)
    assert str(junk) in str(caught.value)
    assert junk.read_bytes() == before
    with pytest.raises(ReadError):
        write_fields(os.fsencode(tmp_path / "gone.mp3"), {"title": "x"}, id3v23=False)


# --- listens ------------------------------------------------------------------------


def test_listens_sees_a_plugin_listening() -> None:
    assert not compat.listens("unmarked-test-event")
    listener = lambda **kwargs: None  # noqa: E731
    plugins.BeetsPlugin.listeners["unmarked-test-event"].append(listener)
    try:
        assert compat.listens("unmarked-test-event")
    finally:
        plugins.BeetsPlugin.listeners["unmarked-test-event"].remove(listener)
    assert {"title", "album", "artist"} <= compat.media_fields()


# --- set_field == item[key] = value ------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("path", "/music/a str path.mp3"), ("path", b"/music/bytes.mp3"), ("renamed", 12.5),
    ("mtime", 7), ("title", "A new title"), ("album_id", 3), ("comp", True),
])
def test_set_field_does_what_setitem_does(key: str, value: Any) -> None:
    def fresh() -> Item:
        item = Item(title="Old", path=b"/music/old.mp3", mtime=99, album_id=1)
        item.clear_dirty()
        return item

    by_beets, ours = fresh(), fresh()
    by_beets[key] = value
    compat.set_field(ours, key, value)
    assert ours[key] == by_beets[key] and type(ours[key]) is type(by_beets[key])
    assert ours.mtime == by_beets.mtime, "a changed tag field resets mtime, nothing else does"
    assert ours._dirty == by_beets._dirty


# --- plugin_getters_fixed ---------------------------------------------------------------


def test_plugin_getters_are_the_same_while_fixed_and_restored_after(env: LibraryEnv) -> None:
    plugin = plugins.find_plugins()[0]
    plugin.template_fields["unmarked_probe"] = lambda item: f"probe-{item.title}"
    try:
        item = Item(title="T", path=os.fsencode(env.lib_path / "t.mp3"))
        env.lib.add(item)
        original = plugins.item_field_getters
        want = set(original())
        with compat.plugin_getters_fixed():
            assert set(plugins.item_field_getters()) == want
            with compat.plugin_getters_fixed():  # nested (another run in another thread)
                assert item.evaluate_template("$unmarked_probe") == "probe-T"
            assert plugins.item_field_getters is not original
        assert plugins.item_field_getters is original, "restored when the last user leaves"
    finally:
        del plugin.template_fields["unmarked_probe"]
