"""The whole job's plan (`/api/plan`), jobs over ids, and queries in either
Unicode form, over a real socket against a real `beet web`."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from beets.library import Item

from beetsplug.unmarked.selection import parse_query, select_ids

from .libenv import LibraryEnv, read_only
from .servers import Server, beet_web, web_settings
from .shared import add_many
from .test_web_api import wait_status
from .test_web_marking import Snapshot

NOTHING_FAILS = {"missing": 0, "unreadable": 0, "not_writable": 0, "destination_taken": 0}


def test_the_plan_finds_failures_by_opening_files_and_changes_nothing(env: LibraryEnv, server: Server) -> None:
    add_many(env, 4)
    missing = env.add_track("missing.ogg", {"title": "Missing", "artist": "Planted"})
    os.remove(missing.path)
    corrupt = env.add_track("corrupt.mp3", {"title": "Corrupt  one", "artist": "Planted"})  # its tags change
    Path(os.fsdecode(corrupt.path)).write_bytes(os.urandom(4096))
    locked = env.add_track("locked.flac", {"title": "Locked  one", "artist": "Planted"})
    clean = env.add_track("clean.flac", {"title": "Clean", "artist": "Tidy"})
    env.lib.add(Item())  # no path at all: skipped by nothing, fails as missing
    env.beet("mark", "--op", "normalize", f"id:{clean.id}")
    with read_only(Path(os.fsdecode(locked.path))):
        before = Snapshot(env)
        plan = server.get("/api/plan", params={"op": "process"}).json()
        assert Snapshot(env) == before, "no row, file or job changed"
    assert plan["count"] == 9 and plan["complete"] is True and plan["next"] is None
    assert plan["failures"] == {"missing": 2, "unreadable": 1, "not_writable": 1, "destination_taken": 0}
    assert (plan["moves"], plan["retags"], plan["unchanged"]) == (5, 4, 0), plan
    errors = {entry["id"]: entry["error"] for entry in plan["sample"] if entry["error"]}
    assert "file not found" in errors[missing.id]
    assert "cannot read its tags" in errors[corrupt.id]
    assert "cannot be written" in errors[locked.id]


def test_a_rename_plan_checks_what_a_move_needs(env: LibraryEnv, server: Server) -> None:
    add_many(env, 2)
    corrupt = env.add_track("corrupt.mp3", {"title": "Corrupt", "artist": "Planted"})
    Path(os.fsdecode(corrupt.path)).write_bytes(os.urandom(4096))
    locked = env.add_track("locked.flac", {"title": "Locked", "artist": "Planted"})
    with read_only(Path(os.fsdecode(locked.path))):
        plan = server.get("/api/plan", params={"op": "rename"}).json()
    assert plan["failures"] == {**NOTHING_FAILS, "not_writable": 1}, "a move reads no tags; an immutable file stays"
    assert plan["moves"] == 3 and plan["retags"] == 0
    [entry] = [entry for entry in plan["sample"] if entry["error"]]
    assert entry["id"] == locked.id and "cannot be moved" in entry["error"]


def test_the_preview_shows_the_failures_the_files_would_meet(env: LibraryEnv, server: Server) -> None:
    """As found: a corrupt MP3 and an immutable FLAC were previewed as normal changes."""
    [fine] = add_many(env, 1)
    corrupt = env.add_track("corrupt.mp3", {"title": "Corrupt  one", "artist": "Planted"})
    Path(os.fsdecode(corrupt.path)).write_bytes(os.urandom(4096))
    locked = env.add_track("locked.flac", {"title": "Locked  one", "artist": "Planted"})
    with read_only(Path(os.fsdecode(locked.path))):
        items = {item["id"]: item for item in server.get("/api/preview", params={"op": "process"}).json()["items"]}
    assert items[fine]["error"] is None
    assert "cannot read its tags" in items[corrupt.id]["error"]
    assert "cannot be written" in items[locked.id]["error"]


def test_slices_add_up_to_the_whole_plan(env: LibraryEnv, server: Server) -> None:
    add_many(env, 7)
    whole = server.post("/api/plan", json={"op": "rename"}).json()
    added = {"moves": 0, "retags": 0, "unchanged": 0, "scanned": 0}
    offset: int | None = 0
    answers = 0
    while offset is not None:
        part = server.post("/api/plan", json={"op": "rename", "offset": offset, "limit": 3}).json()
        assert part["count"] == 7 and part["complete"] is False and part["offset"] == offset
        for key in added:
            added[key] += part[key]
        offset, answers = part["next"], answers + 1
    assert answers == 3 and added == {"moves": 7, "retags": 0, "unchanged": 0, "scanned": 7}
    assert (whole["moves"], whole["retags"], whole["scanned"]) == (7, 0, 7)


def test_a_plan_over_ids_and_the_destination_another_file_holds(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 3)
    taken = env.lib_path / "Singles" / "Artist - Song 1 feat. X.ogg"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"another file")
    plan = server.post("/api/plan", json={"op": "process", "ids": [ids[1], 999_999]}).json()
    assert plan["count"] == 1, "unknown ids are left out"
    assert plan["failures"] == {**NOTHING_FAILS, "destination_taken": 1}
    [entry] = plan["sample"]
    assert entry["id"] == ids[1] and str(taken) in entry["error"]
    env.beet("mark", f"id:{ids[0]}")
    assert server.post("/api/plan", json={"op": "process", "ids": [ids[0]]}).json()["count"] == 1
    done = server.post("/api/plan", json={"op": "process", "ids": [ids[0]]}).json()
    assert (done["moves"], done["retags"], done["unchanged"]) == (0, 0, 1), "a done item is skipped without force"
    forced = server.post("/api/plan", json={"op": "process", "ids": [ids[0]], "force": True}).json()
    assert forced["retags"] == 1


def test_the_plan_is_allowed_on_a_read_only_server(env: LibraryEnv) -> None:
    add_many(env, 2)
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        answer = server.post("/api/plan", json={"op": "normalize", "query": "artist:Artist"})
        assert answer.status_code == 200 and answer.json()["retags"] == 2
    finally:
        server.stop()


@pytest.mark.parametrize(("body", "message"), [
    ('{"op": "process", "ids": [1], "query": "x"}', 'either "ids"'),
    ('{"op": "process", "query": "x", "force": true}', 'narrowed by "scope"'),
    ('{"op": "process", "limit": 0}', "limit must be"),
    ('{"op": "process", "offset": -1}', "offset at least 0"),
    ('{"op": "process", "limit": true}', "must be a int"),
    ('{"op": "process", "ids": ["a"]}', "ids[0] must be an item id"),
    ('{"op": "fold"}', "unknown operation"),
    ('{"op": "process", "query": "unmarked:maybe"}', "invalid query"),
])
def test_bad_plan_requests_are_400(env: LibraryEnv, server: Server, body: str, message: str) -> None:
    answer = server.post("/api/plan", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_a_job_over_ids_covers_exactly_them(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 6)
    started = server.post("/api/jobs", json={"op": "normalize", "ids": [ids[4], ids[1], 123_456]})
    assert started.status_code == 202 and started.json()["total"] == 2, started.text
    summary = wait_status(server, started.json()["job"], {"completed"})
    assert summary["succeeded"] == 2
    assert env.beet_ids("^unmarked:normalize") == sorted([ids[1], ids[4]])


@pytest.mark.parametrize(("body", "message"), [
    ('{"op": "process", "ids": [1], "query": ""}', 'either "ids" or a "query"'),
    ('{"op": "process", "ids": [424242]}', "none of the ids"),
    ('{"op": "process", "ids": [0]}', "ids[0] must be an item id"),
])
def test_bad_job_ids_are_400_and_leave_no_job(env: LibraryEnv, server: Server, body: str, message: str) -> None:
    add_many(env, 1)
    answer = server.post("/api/jobs", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert server.get("/api/jobs").json()["jobs"] == []


@pytest.mark.fast
def test_typed_text_finds_tags_in_either_unicode_form(env: LibraryEnv) -> None:
    nfd, nfc = unicodedata.normalize("NFD", "Björk"), "Björk"
    stored = [env.lib.add(Item(artist=form, title="t", path=b"/x")) for form in (nfd, nfc)]
    env.lib.add(Item(artist="Bjork", title="t", path=b"/y"))
    for typed in (nfc, nfd, f"artist:{nfc}", [f"artist:{nfd}"]):
        assert select_ids(env.lib, parse_query(env.lib, typed)) == stored, typed
    assert len(select_ids(env.lib, parse_query(env.lib, "Bjork"))) == 1, "no folding beyond the Unicode form"
