"""The crash-safety invariants, checked against the library and the disk."""

from __future__ import annotations

import os
from pathlib import Path

from beets.library import Item

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.normalize import Rules

from .audio import read_tags
from .libenv import LibraryEnv, audio_files


def all_items(env: LibraryEnv) -> list[Item]:
    return list(env.lib.items())


def files_accounted_for(env: LibraryEnv, *roots: Path) -> None:
    """No file lost or duplicated: as many audio files as items, each one an
    item's path or the journaled destination of a move the next run settles."""
    items = all_items(env)
    on_disk = {os.fsencode(p) for p in audio_files(*roots)}
    pending = {m.entity: m.dst for m in JobStore(store_path(env.lib)).pending_moves()}
    assert len(on_disk) == len(items), f"{len(on_disk)} files for {len(items)} items"
    for item in items:
        assert item.path in on_disk or pending.get(item.id) in on_disk, f"item {item.id}: file lost"


def consistent(env: LibraryEnv, *roots: Path) -> None:
    """After a run: every path exists and is unique, every file is referenced
    once, and every marker stands for work that was really done."""
    items = all_items(env)
    paths = [item.path for item in items]
    missing = [p for p in paths if not os.path.exists(p)]
    assert missing == [], f"items pointing at missing files: {missing[:5]}"
    assert len(set(paths)) == len(paths), "two items share a file"
    on_disk = sorted(os.fsencode(p) for p in audio_files(*roots))
    assert on_disk == sorted(paths), "orphaned or duplicated audio files"
    rules = Rules.from_config(env.config["unmarked"])
    for item in items:
        if item.get("renamed") is not None:
            assert item.path == item.destination(), f"item {item.id} marked renamed but not at its destination"
        if item.get("normalized") is not None:
            copy = item.copy()
            assert rules.apply(copy, set(copy.keys(with_album=False))) == {}, f"item {item.id} marked but not normalized"
            assert read_tags(Path(os.fsdecode(item.path)))["title"] == [item.title], f"item {item.id}: file tags differ"
    assert JobStore(store_path(env.lib)).pending_moves() == [], "journal not settled"
