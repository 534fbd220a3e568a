"""The crash-safety invariants, checked against the library and the disk."""

from __future__ import annotations

import os
from pathlib import Path

from beets.library import Item

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import ITEM, pending
from beetsplug.unmarked.moves import same_file
from beetsplug.unmarked.normalize import Rules

from .audio import read_tags
from .libenv import LibraryEnv, audio_files


def all_items(env: LibraryEnv) -> list[Item]:
    return list(env.lib.items())


def files_accounted_for(env: LibraryEnv, *roots: Path) -> None:
    """Right after a kill: every item's path exists (a move is visible only
    with its commit), and no file is lost or duplicated - a file on disk that
    no item names is the second name of a journaled move of an item (the same
    file as that item's: a link, or a whole copy), which the next run removes."""
    items = all_items(env)
    on_disk = {os.fsencode(p) for p in audio_files(*roots)}
    moves = {(m.entity, m.src, m.dst) for m in pending(JobStore(store_path(env.lib))) if m.kind == ITEM}
    missing = [item.id for item in items if item.path not in on_disk]
    assert missing == [], f"items pointing at missing files: {missing[:5]}"
    named = {item.path: item for item in items}
    for extra in sorted(on_disk - set(named)):
        owners = [named.get(src if extra == dst else dst) for _, src, dst in moves if extra in (src, dst)]
        assert any(owner is not None and same_file(owner.path, extra) for owner in owners), \
            f"{os.fsdecode(extra)}: a file no item names, not the other name of a journaled move"


def problems(env: LibraryEnv, *roots: Path) -> dict[str, list[object]]:
    """Everything that breaks the invariants after a run, by kind (empty = consistent)."""
    items = all_items(env)
    paths = [item.path for item in items]
    on_disk = {os.fsencode(p) for p in audio_files(*roots)}
    rules = Rules.from_config(env.config["unmarked"])
    found: dict[str, list[object]] = {
        "items pointing at missing files": [i.id for i in items if not os.path.exists(i.path)],
        "files shared by two items": [p for p in set(paths) if paths.count(p) > 1],
        "orphaned or duplicated files": sorted(on_disk - set(paths)),
        "marked renamed, not at destination": [],
        "marked normalized, not normalized": [],
        "journal entries left": pending(JobStore(store_path(env.lib)), kinds=None),
    }
    for item in items:
        if item.get("renamed") is not None and item.path != item.destination():
            found["marked renamed, not at destination"].append(item.id)
        if item.get("normalized") is not None and os.path.exists(item.path):
            copy = item.copy()
            tags = read_tags(Path(os.fsdecode(item.path)))
            if rules.apply(copy, set(copy.keys(with_album=False))) or tags["title"] != [item.title]:
                found["marked normalized, not normalized"].append(item.id)
    return found


def consistent(env: LibraryEnv, *roots: Path) -> None:
    """After a run: every path exists and is unique, every file is referenced
    once, and every marker stands for work that was really done."""
    for kind, cases in problems(env, *roots).items():
        assert cases == [], f"{kind}: {cases[:5]}"
