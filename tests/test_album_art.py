"""Album art follows its items, and art already in place stays where it is."""

from __future__ import annotations

import os

from .libenv import LibraryEnv
from .shared import add_many


def test_art_in_place_is_not_renamed_again(env: LibraryEnv) -> None:
    items = [env.item(i) for i in add_many(env, 3)]
    album = env.lib.add_album(items)
    art = env.temp_path / "cover.jpg"
    art.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    album.set_art(str(art), copy=True)
    album.store()
    env.beet("rename-unmarked")
    placed = env.lib.get_album(album.id).artpath
    assert placed == env.lib.get_album(album.id).art_destination(placed), "art followed its items"
    env.beet("modify", "-y", "-M", f"id:{items[0].id}", "title=Renamed")  # one item moves, in the same folder
    env.beet("rename-unmarked", "--force")
    assert os.fsdecode(env.item(items[0].id).path).endswith("Renamed.flac")
    again = env.lib.get_album(album.id).artpath
    assert again == placed and os.path.exists(again), f"art moved again: {placed!r} -> {again!r}"
    names = os.listdir(os.path.dirname(os.fsdecode(again)))
    assert names.count("cover.jpg") == 1 and not [n for n in names if n.startswith("cover.1")], names
