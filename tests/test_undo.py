"""Undo a job (reversal.py), through the real ``beet``: every file back where
the job found it, its audio and every tag as before (tags the library does
not hold, and tags other tools wrote since, included), the library's fields
and markers as before; an item changed since the job is left alone and
reported; an undo can itself be undone."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import mutagen
import pytest
from mutagen.id3 import TXXX

from .audio import MESSY_TRACKS, make_track
from .consistency import consistent, problems
from .fulltracks import samples_hash
from .libenv import LibraryEnv, audio_files
from .servers import Server, beet_web, web_settings
from .shared import populate
from .sse_client import EventSource
from .test_operations import hold_library
from .test_web_api import wait_status

FIELDS = ("title", "artist", "album", "albumartist", "track")
MARKERS = ("normalized", "renamed", "renamed_layout")


def foreign_tag(path: Path, key: str, value: str) -> None:
    """A tag another tool writes, which the library does not hold."""
    audio = mutagen.File(str(path))
    if path.suffix == ".mp3":
        audio.tags.add(TXXX(encoding=3, desc=key, text=[value]))
    else:
        audio[key] = value
    audio.save()


def all_tags(path: Path) -> list[str]:
    """Every tag of the file, in a stable order (a rewrite may reorder Vorbis
    comments, and write their names in capitals: the format's names ignore case)."""
    lines = mutagen.File(str(path)).tags.pprint().splitlines()
    if path.suffix != ".mp3":
        lines = [key.upper() + "=" + value for key, _, value in (line.partition("=") for line in lines)]
    return sorted(lines)


def state(env: LibraryEnv) -> dict[int, tuple[Any, ...]]:
    """Each item: its path, the library's fields and markers, the file's tags and decoded audio."""
    with sqlite3.connect(env.settings["library"]) as conn:
        markers = {(row[0], row[1]): row[2] for row in conn.execute(
            "SELECT entity_id, key, value FROM item_attributes WHERE key IN (?, ?, ?)", MARKERS)}
    found = {}
    for item in env.lib.items():
        path = Path(os.fsdecode(item.path))
        found[item.id] = (item.path, tuple(item.get(key) for key in FIELDS),
                          tuple(markers.get((item.id, key)) for key in MARKERS),
                          all_tags(path), samples_hash(path))
    return found


def albums(env: LibraryEnv) -> dict[int, tuple[Any, ...]]:
    fields = ("album", "albumartist", "artpath")
    return {album.id: tuple(album.get(key) for key in fields) for album in env.lib.albums()}


def store_events(env: LibraryEnv, job: int) -> list[int]:
    """The ids of the job's items in the order it reported them."""
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:
        return [row[0] for row in conn.execute("SELECT json_extract(data, '$.item_id') FROM events "
                                               "WHERE job = ? AND type = 'item' ORDER BY seq", (job,))]


def last_job(env: LibraryEnv) -> int:
    listing = env.beet("unmarked-jobs").stdout
    return int(listing.split()[0])


def library(env: LibraryEnv, count: int = 12) -> None:
    """Messy tracks (half outside the library directory, some in albums), each with a foreign tag."""
    populate(env, count)
    for item in env.lib.items():
        foreign_tag(Path(os.fsdecode(item.path)), "FOREIGN", f"kept {item.id}")
    for album in env.lib.albums():  # album art, which follows its items (renamed to beets' "cover")
        cover = Path(os.fsdecode(album.items().get().path)).parent / "folder.jpg"
        cover.write_bytes(b"\xff\xd8 art of album %d" % album.id)
        album.artpath = os.fsencode(cover)
        album.store()


def directories(env: LibraryEnv) -> set[str]:
    return {str(path.relative_to(env.temp_path)) for path in env.temp_path.rglob("*")
            if path.is_dir() and "unmarked" not in path.name}


@pytest.mark.parametrize("op", ["process", "rename", "normalize"])
def test_undo_puts_every_file_tag_field_and_marker_back_and_can_be_undone(env: LibraryEnv, op: str) -> None:
    library(env)
    env.beet("normalize-unmarked", "singleton:true")  # markers from before the job (no album): back as they were
    before, albums_before, directories_before = state(env), albums(env), directories(env)
    env.beet(f"{op}-unmarked", "--force")
    job = last_job(env)
    after, albums_after = state(env), albums(env)
    assert after != before
    if op != "rename":
        assert albums_after != albums_before  # the rules changed album rows too
    if op != "normalize":
        assert {key: value[0] for key, value in after.items()} != {key: value[0] for key, value in before.items()}
    # Another tool tags a file after the job: the undo keeps that tag.
    later = Path(os.fsdecode(env.lib.get_item(2).path))
    foreign_tag(later, "LATER", "written after the job")

    out = env.beet("unmarked-jobs", "--undo", str(job)).stdout
    assert f"undo of job {job}" in out and "0 failed" in out, out
    undone = state(env)
    for item_id, (path, fields, markers, tags, audio) in before.items():
        now = undone[item_id]
        assert (now[0], now[1], now[2], now[4]) == (path, fields, markers, audio), item_id
        expected = sorted([*tags, "TXXX=LATER=written after the job" if later.suffix == ".mp3"
                           else "LATER=written after the job"]) if item_id == 2 else tags
        assert now[3] == expected, item_id
    assert albums(env) == albums_before
    assert directories(env) == directories_before  # the job's new ones pruned, the ones it emptied made again
    consistent(env)
    undo = last_job(env)
    listing = env.beet("unmarked-jobs").stdout
    assert re.search(rf"^\s*{undo}\s+completed\s+undo {job}\b", listing, re.M), listing

    env.beet("unmarked-jobs", "--undo", str(undo))  # redo
    redone = state(env)
    for item_id, (path, fields, markers, tags, audio) in after.items():
        assert (redone[item_id][0], redone[item_id][1], redone[item_id][4]) == (path, fields, audio), item_id
        assert redone[item_id][2] == markers, item_id  # the job's own marker values
    assert albums(env) == albums_after
    consistent(env)


def test_an_item_changed_since_the_job_is_left_alone_and_reported(env: LibraryEnv) -> None:
    library(env, 8)
    before = state(env)
    env.beet("process-unmarked")
    job = last_job(env)
    after = state(env)
    env.beet("modify", "-y", "-w", "id:3", "title=Edited Later")  # an edit after the job
    (env.temp_path / "elsewhere").mkdir()
    env.beet("move", "id:4", "-d", str(env.temp_path / "elsewhere"))  # a move after the job
    edited = state(env)

    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"changed since job {job}: Edited Later" in output, output
    assert re.search(rf"changed since job {job}: .*moved since", output), output
    undone = state(env)
    assert undone[3] == edited[3] and undone[4] == edited[4]  # untouched
    assert edited[3] != after[3]
    for item_id in set(before) - {3, 4}:
        assert undone[item_id] == before[item_id], item_id
    found = problems(env, env.temp_path / "elsewhere")
    assert found.pop("marked renamed, not at destination") == [4]  # `beet move -d` moved it off: the user's doing
    assert all(cases == [] for cases in found.values()), found


def test_a_move_back_onto_a_name_another_file_took_fails_that_item_only(env: LibraryEnv) -> None:
    library(env, 6)
    before = state(env)
    env.beet("rename-unmarked")
    job = last_job(env)
    squatter = Path(os.fsdecode(before[1][0]))
    make_track(squatter, MESSY_TRACKS[0])  # a new file where item 1 was
    squatted = squatter.read_bytes()

    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1
    assert "cannot move it back to" in result.stdout + result.stderr
    assert squatter.read_bytes() == squatted
    undone = state(env)
    for item_id in set(before) - {1}:
        assert undone[item_id] == before[item_id], item_id
    assert env.lib.get_item(1).get("renamed") is not None  # still as the job left it
    found = problems(env, squatter.parent)
    assert found.pop("orphaned or duplicated files") == [os.fsencode(squatter)]  # the new file, kept
    assert all(cases == [] for cases in found.values()), found


def test_pretend_shows_the_undo_and_changes_nothing(env: LibraryEnv) -> None:
    library(env, 6)
    env.beet("process-unmarked")
    job = last_job(env)
    after = state(env)
    out = env.beet("unmarked-jobs", "--undo", str(job), "--pretend").stdout
    assert "pretend: nothing was changed" in out and "->" in out, out
    assert state(env) == after
    assert last_job(env) == job  # no job created


def test_what_cannot_be_undone_says_why(env: LibraryEnv) -> None:
    library(env, 4)
    result = env.beet("unmarked-jobs", "--undo", "99", check=False)
    assert result.returncode == 1 and "no job 99" in result.stderr


def test_an_import_hook_job_is_undone(env: LibraryEnv) -> None:
    env.configure(unmarked={"auto": True})
    album_dir = env.temp_path / "import" / "album"
    for i, tags in enumerate(MESSY_TRACKS[2:5]):
        make_track(album_dir / f"{i}.{['flac', 'ogg', 'mp3'][i]}", {**tags, "tracknumber": str(i + 1)})
    originals = {path.name: (all_tags(path), samples_hash(path)) for path in audio_files(album_dir)}
    env.beet("import", "-A", "-C", "-q", str(album_dir.parent))
    assert audio_files(album_dir) == []
    job = last_job(env)
    env.beet("unmarked-jobs", "--undo", str(job))
    back = {path.name: (all_tags(path), samples_hash(path)) for path in audio_files(album_dir)}
    assert back == originals
    for item in env.lib.items():
        assert item.get("normalized") is None and item.get("renamed") is None
    consistent(env, album_dir)


def test_the_web_api_undoes_a_job_and_streams_it(env: LibraryEnv, server: Server) -> None:
    library(env, 8)
    before = state(env)
    response = server.post("/api/jobs", json={"op": "process"})
    assert response.status_code == 202
    job = response.json()["job"]
    assert wait_status(server, job, {"completed"})["succeeded"] == 8
    assert server.post("/api/jobs/999/undo").status_code == 404
    assert server.post("/api/jobs/x/undo").status_code == 404
    assert server.post(f"/api/jobs/{job}/undo", headers={"Origin": "http://evil.example"}).status_code == 403

    held = hold_library(env)
    try:
        busy = server.post(f"/api/jobs/{job}/undo")
        assert busy.status_code == 409 and busy.json()["job"] == held.id
    finally:
        held.close()

    response = server.post(f"/api/jobs/{job}/undo")
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["undoes"], body["total"], body["events"]) == (job, 8, f"/api/jobs/{body['job']}/events")
    events = [event.data for event in EventSource(server.url(body["events"])).events()]
    assert events[0]["type"] == "start" and events[0]["op"] == "undo"
    done = store_events(env, job)
    assert [e["item_id"] for e in events if e["type"] == "item"] == done[::-1]  # the last done, first undone
    assert events[-1]["type"] == "done" and events[-1]["status"] == "completed"
    summary = server.get(f"/api/jobs/{body['job']}").json()
    assert (summary["op"], summary["undoes"]) == ("undo", job)
    assert state(env) == before
    consistent(env)


def test_the_web_api_refuses_what_cannot_be_undone(env: LibraryEnv) -> None:
    library(env, 4)
    env.configure(unmarked={"job_history_mb": 1})
    env.beet("rename-unmarked")
    job = last_job(env)
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:  # as ``keep_within`` leaves it
        conn.execute("UPDATE jobs SET compacted = 1 WHERE id = ?", (job,))
    web_settings(env)
    server = beet_web(env)
    try:
        refused = server.post(f"/api/jobs/{job}/undo")
        assert refused.status_code == 400 and "can no longer be undone" in refused.json()["error"]
    finally:
        server.stop()
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1 and "job_history_mb" in result.stderr


def test_an_item_the_record_does_not_describe_is_reported_and_left(env: LibraryEnv) -> None:
    """A run stopped between a commit and its report is resumed by a server,
    which reports those items done without their plans (runner.adopt): the
    undo leaves them as they are and says why; the rest is undone."""
    library(env, 6)
    before = state(env)
    env.beet("process-unmarked")
    job = last_job(env)
    after = state(env)
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:  # the record such a resumption leaves
        conn.execute("UPDATE events SET data = json_remove(data, '$.undo') WHERE job = ? AND type = 'item' "
                     "AND json_extract(data, '$.item_id') = 2", (job,))
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1
    assert f"job {job} did not record what it changed here" in result.stdout + result.stderr
    undone = state(env)
    assert undone[2] == after[2]
    assert all(undone[item_id] == before[item_id] for item_id in set(before) - {2})


def test_a_name_one_item_left_and_a_later_one_took_is_given_back_in_turn(env: LibraryEnv) -> None:
    """The job moved B off a name, then (a later batch) moved A onto it: the
    undo takes A off it first (the last done, first undone), then B gets its name back."""
    env.configure(unmarked={"batch_size": 1})
    b = env.add_track("Art - Song.mp3", {"title": "Song", "artist": "Other"}, where=env.lib_path / "Singles")
    a = env.add_track("a.mp3", {"title": "Song", "artist": "Art"})
    before = state(env)
    env.beet("rename-unmarked")
    job = last_job(env)
    assert env.lib.get_item(a.id).path == before[b.id][0]  # A took the name B left
    env.beet("unmarked-jobs", "--undo", str(job))
    assert state(env) == before
    consistent(env)


def test_a_web_undo_left_running_whose_job_was_compacted_ends_saying_so(env: LibraryEnv) -> None:
    """A server resumes a web undo its dead process left (runner.adopt); if the
    job it undoes can no longer be undone by then, the undo ends failed, saying
    why, instead of the server retrying it for ever."""
    library(env, 4)
    env.beet("rename-unmarked")
    job = last_job(env)
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:
        conn.execute("UPDATE jobs SET compacted = 1 WHERE id = ?", (job,))
        conn.execute("INSERT INTO jobs (op, query, force, origin, status, created, host, pid, heartbeat, undoes) "
                     "VALUES ('undo', 'undo of job 1', 0, 'web', 'running', 0, 'gone', 1, 0, ?)", (job,))
    web_settings(env)
    server = beet_web(env)
    try:
        summary = wait_status(server, job + 1, {"failed", "completed", "interrupted"})
    finally:
        server.stop()
    assert summary["status"] == "failed" and "can no longer resume" in summary["error"], summary


def test_a_job_that_did_nothing_has_nothing_to_undo(env: LibraryEnv, server: Server) -> None:
    library(env, 4)
    env.beet("rename-unmarked")
    env.beet("rename-unmarked", "--force", "id:999")  # a job that matched nothing
    job = last_job(env)
    refused = server.post(f"/api/jobs/{job}/undo")
    assert refused.status_code == 400 and "changed nothing" in refused.json()["error"]
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1 and "changed nothing" in result.stderr
    assert last_job(env) == job  # no undo job made
