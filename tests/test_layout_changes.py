"""Markers stay true when the path configuration changes (`paths:`, `replace`,
`asciify_paths`, `directory:`), through the real `beet` on real files.

A ``renamed`` marker says "this file is at its destination". The destination
depends on the configuration, so a marker made under another one proves
nothing: after a change, ``beet rename-unmarked`` (no ``--force``) moves
exactly the items whose destination changed, as ``beet move`` would, and
leaves the others where they are, their markers refreshed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from beets.library import Item

from beetsplug.unmarked import layout
from beetsplug.unmarked.beets_compat import bind_music_dir
from beetsplug.unmarked.journal import UNREPORTED, pending

from .consistency import consistent
from .gates import in_flight, library_write_lock, store, store_write_lock, wait_for
from .libenv import LibraryEnv
from .servers import beet_web, web_settings
from .shared import add_many
from .sse_client import EventSource
from .test_web_api import wait_status

EXTS = ["flac", "ogg", "mp3"]
LAYOUT = "renamed_layout"

TRACKS = [
    ("Alpha", "Red", "One"), ("Alpha", "Red", "Two"), ("Alpha", "Blue", "Three"),
    ("Beta", "Green", "Four"), ("Beta", "Green", "Five"),
    ("Björk", "Début", "Human Behaviour"), ("Björk", "Début", "Crying"),
]


PATHS = {"default": "$albumartist/$album/$track $title", "singleton": "$albumartist/$album/$track $title"}


def renamed_library(env: LibraryEnv) -> list[int]:
    """Seven real files, renamed by the plugin: every one at its destination and marked."""
    env.configure(paths=PATHS)
    items = env.add_tracks(
        (f"t{n}.{EXTS[n % 3]}", {"artist": artist, "albumartist": artist, "album": album, "title": title,
                                 "tracknumber": str(n + 1)})
        for n, (artist, album, title) in enumerate(TRACKS)
    )
    env.beet("rename-unmarked")
    ids = [item.id for item in items]
    assert env.beet_ids("unmarked:rename") == []
    return ids


def snapshot(env: LibraryEnv) -> dict[int, tuple[bytes, int]]:
    """Each item's path and its file's inode (a moved file keeps it, a rewritten one would not)."""
    return {item.id: (item.path, os.stat(item.path).st_ino) for item in env.lib.items()}


def destinations(env: LibraryEnv) -> dict[int, bytes]:
    """beets' own answer: ``item.destination()`` under the configuration now in force."""
    return {item.id: item.destination() for item in env.lib.items()}


def marker_rows(env: LibraryEnv, key: str) -> dict[int, str]:
    with sqlite3.connect(env.settings["library"]) as conn:
        return dict(conn.execute("SELECT entity_id, value FROM item_attributes WHERE key = ?", (key,)).fetchall())


def beet_move_pretend(env: LibraryEnv) -> str:
    """What beets' own ``beet move --pretend`` would still move."""
    return env.beet("move", "--pretend").stdout.strip()


def check_moved_exactly_the_changed(env: LibraryEnv, before: dict[int, tuple[bytes, int]],
                                    expected: dict[int, bytes]) -> None:
    """Run ``beet rename-unmarked``; it must move the items whose destination
    changed, to it, and no other, and leave every item marked where it belongs."""
    changed = {item_id for item_id, dest in expected.items() if dest != before[item_id][0]}
    result = env.beet("rename-unmarked")
    assert "0 failed" in result.stdout, result.stdout + result.stderr
    after = snapshot(env)
    moved = {item_id for item_id in after if after[item_id][0] != before[item_id][0]}
    assert moved == changed, f"moved {sorted(moved)}, destination changed for {sorted(changed)}"
    for item_id, (path, inode) in after.items():
        assert path == expected[item_id], f"item {item_id} is not at beets' destination"
        assert inode == before[item_id][1], f"item {item_id}'s file was replaced, not moved"
    assert beet_move_pretend(env) == "", "beet move would still move something"
    assert env.beet_ids("unmarked:rename") == []
    assert set(marker_rows(env, "renamed")) == set(after)
    consistent(env, env.incoming, Path(os.fsdecode(env.lib.directory)))


CHANGES: dict[str, dict[str, Any]] = {
    # a new format for one artist: only Beta's items change
    "paths": {"paths": {"artist:Beta": "Beta Sides/$title", **PATHS}},
    # a replacement that touches Alpha's "Red" album only
    "replace": {"replace": {"^Red$": "Rot"}},
    # only Björk's paths hold non-ASCII characters
    "asciify_paths": {"asciify_paths": True},
}


@pytest.mark.parametrize("setting", list(CHANGES))
def test_a_changed_setting_moves_exactly_the_items_whose_destination_changed(env: LibraryEnv, setting: str) -> None:
    renamed_library(env)
    before = snapshot(env)
    env.configure(**CHANGES[setting])
    expected = destinations(env)
    changed = {item_id for item_id, dest in expected.items() if dest != before[item_id][0]}
    assert changed and changed != set(expected), "the change must move some items and keep others"
    assert beet_move_pretend(env) != "", "beets itself sees files to move"
    check_moved_exactly_the_changed(env, before, expected)
    # the run recorded the configuration it worked under: nothing is left to do
    assert "0 processed" in env.beet("rename-unmarked").stdout


def test_a_changed_music_directory_moves_nothing_and_refreshes_the_markers(env: LibraryEnv) -> None:
    """beets keeps paths relative to the music directory: a library whose
    folder moved with its ``directory:`` needs no move, and gets none; its
    markers now stand for the new directory."""
    renamed_library(env)
    moved_to = env.temp_path / "moved-music"
    shutil.move(str(env.lib_path), moved_to)
    env.configure(directory=str(moved_to))
    env.lib.directory = os.fsencode(moved_to)  # (the `beet` commands read it from the config file)
    bind_music_dir(env.lib)
    before = snapshot(env)
    expected = destinations(env)
    assert all(dest.startswith(os.fsencode(moved_to)) for dest in expected.values())
    assert "7 stale" in env.beet("unmarked-status").stdout
    result = env.beet("rename-unmarked")
    assert "7 succeeded, 0 failed" in result.stdout
    assert snapshot(env) == before, "nothing moved"
    assert all(item.path == expected[item.id] for item in env.lib.items())
    assert "0 stale" in env.beet("unmarked-status").stdout
    assert env.beet_ids("unmarked:rename") == []


def test_process_renames_the_items_a_changed_setting_moved(env: LibraryEnv) -> None:
    """process-unmarked: items normalized and renamed under the old paths are
    renamed again where the new ones say (their tags are clean already)."""
    ids = renamed_library(env)
    env.beet("normalize-unmarked")
    assert env.beet_ids("unmarked:process") == []
    before = snapshot(env)
    env.configure(**CHANGES["paths"])
    expected = destinations(env)
    changed = {item_id for item_id, dest in expected.items() if dest != before[item_id][0]}
    result = env.beet("process-unmarked")
    assert f"{len(ids)} processed" in result.stdout and "0 failed" in result.stdout
    after = snapshot(env)
    assert {i for i in after if after[i][0] != before[i][0]} == changed
    assert all(after[i][0] == expected[i] for i in after)
    assert env.beet_ids("unmarked:process") == []
    consistent(env, env.incoming, Path(os.fsdecode(env.lib.directory)))


def test_the_unmarked_query_counts_stale_markers_as_absent(env: LibraryEnv) -> None:
    ids = renamed_library(env)
    assert env.beet_ids("unmarked:false") == [] and env.beet_ids("unmarked:rename") == []
    env.configure(**CHANGES["paths"])
    assert env.beet_ids("unmarked:rename") == sorted(ids), "made under other paths: to be checked again"
    assert env.beet_ids("unmarked:rename", "artist:Alpha") == sorted(ids[:3])
    assert env.beet_ids("^unmarked:rename") == []
    status = env.beet("unmarked-status").stdout
    assert "7 stale" in status
    # back to the paths they were renamed under: the markers hold again
    env.configure(paths=PATHS)
    assert env.beet_ids("unmarked:rename") == []
    assert "0 stale" in env.beet("unmarked-status").stdout


def test_mark_and_unmark_as_before_and_mark_records_the_configuration(env: LibraryEnv) -> None:
    ids = renamed_library(env)
    env.configure(**CHANGES["paths"])
    assert env.beet_ids("unmarked:rename") == sorted(ids)
    said = env.beet("mark", "--op", "rename", "artist:Alpha").stdout
    assert "3 items matched (rename): renamed set on 3" in said, said
    assert env.beet_ids("unmarked:rename") == sorted(ids[3:])
    said = env.beet("mark", "--op", "rename", "artist:Alpha").stdout
    assert "renamed set on 0" in said, "marked under this configuration already"
    said = env.beet("unmark", "--op", "rename", "artist:Beta").stdout
    assert "2 items matched (rename): renamed cleared on 2" in said, said
    assert set(marker_rows(env, "renamed")) == set(ids) - set(ids[3:5])
    assert set(marker_rows(env, LAYOUT)) == set(marker_rows(env, "renamed")), "no fingerprint left without its marker"


def test_a_marker_from_an_older_release_counts_as_made_under_the_current_configuration(env: LibraryEnv) -> None:
    """A library marked before fingerprints existed is not renamed again
    wholesale on upgrade; it is checked again only once the configuration changes."""
    ids = renamed_library(env)
    with sqlite3.connect(env.settings["library"]) as conn:
        conn.execute("DELETE FROM item_attributes WHERE key = ?", (LAYOUT,))
    assert env.beet_ids("unmarked:rename") == []
    assert "0 processed" in env.beet("rename-unmarked").stdout
    status = env.beet("unmarked-status").stdout
    assert "7 without a configuration fingerprint" in status, status
    assert set(marker_rows(env, "renamed")) == set(ids)


def test_normalize_that_changes_a_destination_clears_the_fingerprint_with_the_marker(env: LibraryEnv) -> None:
    env.add_track("x.flac", {"artist": "Gamma  Ray", "albumartist": "Gamma  Ray", "album": "A", "title": "T"})
    env.beet("rename-unmarked")
    env.beet("normalize-unmarked")  # "Gamma  Ray" -> "Gamma Ray": its destination changed, it was not moved
    assert marker_rows(env, "renamed") == {} and marker_rows(env, LAYOUT) == {}
    env.beet("rename-unmarked")
    item: Item = next(iter(env.lib.items()))
    assert item.path == item.destination() and Path(os.fsdecode(item.path)).exists()


# --- a web job resumed after the server restarted with other paths ---------------------------------


def wait_for_marked(env: LibraryEnv, count: int) -> None:
    wait_for(lambda: len(marker_rows(env, "renamed")) >= count, f"{count} items marked")


@pytest.mark.parametrize("reported", [True, False], ids=["first-batch-reported", "first-batch-unreported"])
def test_a_web_job_resumed_under_other_paths_ends_failed_saying_why(env: LibraryEnv, reported: bool) -> None:
    """`beet web` killed after its job's first commit, restarted with new
    ``paths:``: the job does not finish with two layouts and say "completed".
    It ends failed, naming the change and the command to run; what its first
    part did is in its record; the next rename moves every item to the new
    layout, those the first part moved included."""
    web_settings(env)
    env.configure(paths=PATHS, unmarked={"batch_size": 10})
    ids = add_many(env, 30)
    server = beet_web(env)
    gate, held = library_write_lock(env).acquire(), store_write_lock(env)
    try:  # the job holds at its first batch's commit, its items noted as committed-but-unreported
        job = server.post("/api/jobs", json={"op": "rename"}).json()["job"]
        wait_for(lambda: len(pending(store(env), kinds=[UNREPORTED])) == 10, "the first batch at its commit")
        held.acquire()  # the first commit goes through; the job then waits to report it
        gate.release()
        wait_for_marked(env, 10)
        if reported:  # hold the second batch at its commit instead, once the first is reported
            gate.acquire()
            held.release()
            wait_for(lambda: store(env).get(job)["current"] == 10 and in_flight(env, job) > 0,
                     "the first batch reported, the second under way")
        server.kill()
        server.stop()
    finally:
        held.release()
        gate.release()
    assert sorted(marker_rows(env, "renamed")) == ids[:10]
    first_part = {item.id: item.path for item in env.lib.items() if item.id in ids[:10]}

    env.configure(paths={"default": "New/$artist/$title", "singleton": "New/$artist/$title"})
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, job, {"completed", "failed", "cancelled", "interrupted"})
        events = list(EventSource(restarted.url(f"/api/jobs/{job}/events")).events())
    finally:
        restarted.stop()
    assert summary["status"] == "failed", summary
    assert "path configuration changed" in summary["error"] and "paths" in summary["error"]
    assert "beet rename-unmarked" in summary["error"]
    assert summary["succeeded"] == summary["current"] == 10 and summary["failed"] == 0
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    items = [e.data["item_id"] for e in events if e.type == "item"]
    assert sorted(items) == ids[:10], "each item the first part committed reported once, and no other"
    assert events[-1].type == "done" and events[-1].data["status"] == "failed"
    assert {item.id: item.path for item in env.lib.items() if item.id in ids[:10]} == first_part
    assert sorted(marker_rows(env, "renamed")) == ids[:10], "nothing more was marked after the restart"
    assert "path configuration changed" in restarted.log()

    # Nothing claims to be where it is not: the first part's markers are stale, and the next rename moves all.
    assert env.beet_ids("unmarked:rename") == sorted(ids)
    result = env.beet("rename-unmarked")
    assert "30 succeeded, 0 failed" in result.stdout
    assert all(item.path == item.destination() and b"/New/" in item.path for item in env.lib.items())
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.fast
def test_the_fingerprint_follows_what_moves_files_and_nothing_else(env: LibraryEnv) -> None:
    before = layout.snapshot()
    env.configure(unmarked={"batch_size": 7}, web={"host": "127.0.0.2"}, art_filename="folder")
    assert layout.snapshot() == before, "settings that move no item's file are not in it"
    for setting, value in [("paths", {"default": "$title", **{k: v for k, v in PATHS.items() if k != "default"}}),
                           ("replace", {"x": "y"}), ("asciify_paths", True), ("path_sep_replace", "-"),
                           ("max_filename_length", 40), ("directory", str(env.temp_path / "elsewhere"))]:
        env.configure(**{setting: value})
        now = layout.snapshot()
        assert layout.changed(before, now) == [setting]
        assert layout.fingerprint(now) != layout.fingerprint(before) == layout.fingerprint(before)
        before = now
