"""Adversarial cases for the undo: each test is what the README's "Undo a
job" promises, tried against a real library through the real ``beet``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mutagen

from .audio import make_track
from .libenv import LibraryEnv
from .test_undo import last_job, library, state


def path_of(env: LibraryEnv, item_id: int) -> Path:
    return Path(os.fsdecode(env.item(item_id).path))


def title_tag(path: Path) -> list[str]:
    audio = mutagen.File(str(path))
    if path.suffix == ".mp3":
        return [str(text) for text in audio.tags["TIT2"].text]
    return list(audio["title"])


def test_a_title_another_tool_wrote_since_the_job_is_not_overwritten(env: LibraryEnv) -> None:
    """README: "Nothing changed since is overwritten ... tags other tools wrote
    since ... stay". A tagger (Picard, kid3) retitles a file the job retitled;
    the library does not know. The undo must not write the old title over it."""
    library(env, 6)
    env.beet("process-unmarked")
    job = last_job(env)
    path = path_of(env, 1)
    audio = mutagen.File(str(path))
    if path.suffix == ".mp3":
        audio.tags["TIT2"].text = ["Picard's Title"]
    else:
        audio["title"] = "Picard's Title"
    audio.save()

    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert title_tag(path_of(env, 1)) == ["Picard's Title"], result.stdout + result.stderr


def test_a_tag_another_tool_wrote_since_stays_with_a_write_plugin(env: LibraryEnv) -> None:
    """With a plugin that edits tags on beets' write event (zero), the undo
    writes every field the library holds: a genre a tagger wrote in the file
    since the job is lost, though the job never touched genre."""
    env.configure(plugins=["unmarked", "zero"], zero={"fields": ["comments"]})
    library(env, 6)
    env.beet("process-unmarked")
    job = last_job(env)
    path = path_of(env, 1)
    audio = mutagen.File(str(path), easy=True)
    audio["genre"] = "Written By A Tagger"
    audio.save()

    env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert mutagen.File(str(path_of(env, 1)), easy=True).get("genre") == ["Written By A Tagger"]


def test_an_album_edited_since_the_job_is_reported(env: LibraryEnv) -> None:
    """README: what changed since is "left alone and reported". An album whose
    row the job normalized and the user retitled since (``beet modify -a``)."""
    library(env, 12)
    env.beet("process-unmarked")
    job = last_job(env)
    album = env.lib.albums().get()
    env.beet("modify", "-y", "-a", "-M", f"id:{album.id}", "comments=my note")  # a field the job did not change
    env.beet("modify", "-y", "-a", "-M", f"id:{album.id}", "album=My Own Album Title")
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    output = result.stdout + result.stderr
    assert env.lib.get_album(album.id).album == "My Own Album Title"
    assert "changed since" in output, output


def test_two_items_that_swapped_names_both_go_back(env: LibraryEnv) -> None:
    """A rename where one item takes the name another leaves (the library had
    a file under the name its tags no longer give): "items go back last-done
    first, so a name one item left and a later one took is free again in time"."""
    singles = env.lib_path / "Singles"
    first = env.add_track("Art - X.mp3", {"title": "Y", "artist": "Art"}, where=singles)  # goes to "Art - Y"
    env.add_track("second.mp3", {"title": "X", "artist": "Art"})  # goes to "Art - X", first's old name
    before = state(env)
    env.beet("rename-unmarked")
    job = last_job(env)
    assert env.item(int(first.id or 0)).path != before[int(first.id or 0)][0]
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert state(env) == before, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_cycle_of_names_goes_back(env: LibraryEnv) -> None:
    """Same, with the names taken in the other order (the first item done
    takes the name of one done later: it gets a ``.1`` in the job)."""
    singles = env.lib_path / "Singles"
    env.add_track("second.mp3", {"title": "X", "artist": "Art"})
    first = env.add_track("Art - X.mp3", {"title": "Y", "artist": "Art"}, where=singles)
    before = state(env)
    env.beet("rename-unmarked")
    job = last_job(env)
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert state(env) == before, result.stdout + result.stderr
    assert env.item(int(first.id or 0)).path == before[int(first.id or 0)][0]


def byte_state(env: LibraryEnv) -> dict[int, tuple[object, ...]]:
    """Each item's path, title and the file's tags (paths kept as bytes: not UTF-8)."""
    return {item.id: (item.path, item.title, sorted(mutagen.File(item.path).tags.pprint().splitlines()))
            for item in env.lib.items()}


def test_a_file_name_that_is_not_utf8_goes_back_byte_for_byte(env: LibraryEnv) -> None:
    """A Latin-1 file name (``été.mp3`` written by an old tool): the file goes
    back to exactly those bytes."""
    raw = os.fsencode(env.incoming) + b"/\xe9t\xe9 \xff.mp3"
    make_track(Path(os.fsdecode(raw)), {"title": "  Summer ", "artist": "Band", "album": "Hot"})
    from beets.library import Item
    item = Item.from_path(raw)
    env.lib.add(item)
    long_name = os.fsencode(env.incoming) + b"/" + ("\u00e9" * 120).encode() + b".mp3"  # 240 bytes
    make_track(Path(os.fsdecode(long_name)), {"title": "Long ft. One", "artist": "Band", "album": "Hot"})
    env.lib.add(Item.from_path(long_name))
    before = byte_state(env)
    env.beet("process-unmarked")
    job = last_job(env)
    assert env.item(int(item.id or 0)).path != raw
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert byte_state(env) == before, result.stdout + result.stderr
    assert os.path.exists(raw)
    # and the undo of the undo (a redo), then its undo
    env.beet("unmarked-jobs", "--undo", str(last_job(env)))
    env.beet("unmarked-jobs", "--undo", str(last_job(env)))
    assert byte_state(env) == before


def test_two_jobs_undone_newest_first_put_everything_back(env: LibraryEnv) -> None:
    """process, then a rename --force after a path format change; undo the
    first (items moved since are reported), then the second, then the first."""
    library(env, 8)
    before = state(env)
    env.beet("process-unmarked")
    first = last_job(env)
    env.configure(paths={"default": "$albumartist - $album/$title", "singleton": "Loose/$artist/$title"},
                  replace={"[ ]": "_"}, asciify_paths=True)
    env.beet("rename-unmarked", "--force")
    second = last_job(env)
    early = env.beet("unmarked-jobs", "--undo", str(first), check=False)
    assert early.returncode == 1 and "moved since" in early.stdout + early.stderr, early.stdout + early.stderr
    env.beet("unmarked-jobs", "--undo", str(second))
    result = env.beet("unmarked-jobs", "--undo", str(first), check=False)
    assert state(env) == before, result.stdout + result.stderr


def test_undo_redo_undo_is_the_state_before(env: LibraryEnv) -> None:
    library(env, 8)
    env.beet("normalize-unmarked", "id:1..3")
    before = state(env)
    env.beet("process-unmarked", "--force")
    job = last_job(env)
    env.beet("unmarked-jobs", "--undo", str(job))
    undo = last_job(env)
    twice = env.beet("unmarked-jobs", "--undo", str(job), check=False)  # again: all skipped, nothing changed
    assert state(env) == before, twice.stdout + twice.stderr
    env.beet("unmarked-jobs", "--undo", str(undo))  # redo
    redo = last_job(env)
    out = env.beet("unmarked-jobs", "--undo", str(redo), check=False)  # undo the redo
    assert state(env) == before, out.stdout + out.stderr
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_move_back_that_fails_leaves_the_item_as_the_job_left_it_and_a_later_undo_finishes(
        env: LibraryEnv) -> None:
    """The directory an item goes back to is read-only for the undo: that item
    fails. It must stay as the job left it (or as before it), never half-way
    (old tags at the job's path with the job's markers), which every later
    undo reports as "edited since" and never finishes."""
    from .libenv import read_only
    library(env, 6)
    before = state(env)
    env.beet("process-unmarked")
    job = last_job(env)
    after = state(env)
    with read_only(env.incoming):
        result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    undone = state(env)
    # An item whose move back failed after its tag write keeps the old tags at the
    # job's path, with the job's markers (recorded so: the file holds them); never
    # anything else, and the next undo finishes it.
    for item_id in undone:
        if undone[item_id] not in (before[item_id], after[item_id]):
            assert (undone[item_id][0], undone[item_id][2]) == (after[item_id][0], after[item_id][2]), item_id
            assert undone[item_id][1] == before[item_id][1], item_id
    out = env.beet("unmarked-jobs", "--undo", str(job), check=False)  # writable again: the undo finishes
    assert out.returncode == 0 and state(env) == before, out.stdout + out.stderr


def test_album_art_goes_back_under_its_old_name_without_touching_a_new_file_there(env: LibraryEnv) -> None:
    library(env, 12)
    album = env.lib.albums().get()
    old_art = Path(os.fsdecode(album.artpath))
    art_bytes = old_art.read_bytes()
    env.beet("rename-unmarked")
    job = last_job(env)
    old_art.parent.mkdir(parents=True, exist_ok=True)
    old_art.write_bytes(b"a new cover the user dropped here")
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert old_art.read_bytes() == b"a new cover the user dropped here"
    back = Path(os.fsdecode(env.lib.get_album(album.id).artpath))
    assert back.read_bytes() == art_bytes
    assert back == old_art or "art" in result.stdout + result.stderr, (back, result.stdout + result.stderr)


def test_a_name_taken_in_a_later_batch_goes_back(env: LibraryEnv) -> None:
    """One item per batch: the second takes the name the first left; the undo
    puts both back (the second first)."""
    env.configure(unmarked={"batch_size": 1})
    singles = env.lib_path / "Singles"
    first = env.add_track("Art - X.mp3", {"title": "Y", "artist": "Art"}, where=singles)
    second = env.add_track("second.mp3", {"title": "X", "artist": "Art"})
    before = state(env)
    env.beet("rename-unmarked")
    job = last_job(env)
    assert env.item(int(second.id or 0)).path == before[int(first.id or 0)][0]  # the name the first left
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert state(env) == before, result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr


def swapped_names(env: LibraryEnv) -> tuple[dict[int, Any], int]:
    """Two items, one batch each: the second took the name the first left. The state before, the job."""
    env.configure(unmarked={"batch_size": 1})
    singles = env.lib_path / "Singles"
    first = env.add_track("Art - X.mp3", {"title": "Y", "artist": "Art"}, where=singles)
    env.add_track("second.mp3", {"title": "X", "artist": "Art"})
    before = state(env)
    env.beet("rename-unmarked")
    assert env.item(2).path == before[int(first.id or 0)][0]
    return before, last_job(env)


def test_the_pages_undo_plan_counts_what_the_undo_then_does(env: LibraryEnv) -> None:
    """README: "on the page, the undo asks for confirmation with the same plan
    numbers as a job". A name the undo frees itself is not "taken"."""
    from .servers import beet_web, web_settings
    before, job = swapped_names(env)
    web_settings(env)
    server = beet_web(env)
    try:
        plan = server.get(f"/api/jobs/{job}/undo").json()
        response = server.post(f"/api/jobs/{job}/undo")
        assert response.status_code == 202, response.text
        from .test_web_api import wait_status
        summary = wait_status(server, response.json()["job"], {"completed", "failed"})
    finally:
        server.stop()
    assert state(env) == before
    assert summary["failed"] == 0, summary
    assert (plan["moves"], sum(plan["failures"].values())) == (2, 0), plan


def test_pretend_says_what_the_undo_then_does(env: LibraryEnv) -> None:
    before, job = swapped_names(env)
    pretend = env.beet("unmarked-jobs", "--undo", str(job), "--pretend", check=False)
    real = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    assert state(env) == before and real.returncode == 0, real.stdout + real.stderr
    assert "cannot move it back" not in pretend.stdout + pretend.stderr, pretend.stdout + pretend.stderr
    assert pretend.returncode == 0, pretend.stdout + pretend.stderr


def test_undoing_a_markers_only_job_after_undoing_the_job_before_it_does_not_mark_undone_items(
        env: LibraryEnv) -> None:
    """normalize (job 1: retags), normalize --force (job 2: nothing left to
    change, new markers only); undo job 1, then job 2. Job 2's undo must not
    give back the ``normalized`` marker job 1 set: job 1's retags are gone,
    so the item would claim to be normalized with its messy tags (and
    ``normalize-unmarked`` would skip it for good)."""
    library(env, 6)
    before = state(env)
    env.beet("normalize-unmarked")
    first = last_job(env)
    env.beet("normalize-unmarked", "--force")
    second = last_job(env)
    retagged = {item_id for item_id, now in state(env).items() if now[1] != before[item_id][1]}
    assert retagged, "job 1 retagged items"
    env.beet("unmarked-jobs", "--undo", str(first), check=False)
    result = env.beet("unmarked-jobs", "--undo", str(second), check=False)
    now = state(env)
    messy_but_marked = sorted(item_id for item_id in retagged  # fields as before job 1, yet "normalized"
                              if now[item_id][1] == before[item_id][1] and now[item_id][2][0] is not None)
    assert messy_but_marked == [], (messy_but_marked, result.stdout + result.stderr)
    assert retagged <= set(env.beet_ids("unmarked:normalize")), result.stdout + result.stderr


def test_an_album_whose_items_were_all_left_alone_is_left_alone(env: LibraryEnv) -> None:
    """Every track of an album edited since the job (a title each): every item
    is "left as it is"; the album row must not be put back either, or it no
    longer agrees with any of its items (``beet ls -a`` shows the old album
    name, the tracks the new one)."""
    library(env, 12)
    env.beet("process-unmarked")
    job = last_job(env)
    album = env.lib.albums().get()
    after = album.album
    for item in album.items():
        env.beet("modify", "-y", "-w", f"id:{item.id}", f"title=Edited {item.id}")
    edited = {item.id: item.album for item in env.lib.get_album(album.id).items()}
    result = env.beet("unmarked-jobs", "--undo", str(job), check=False)
    output = result.stdout + result.stderr
    assert output.count("changed since") == len(album.items()), output
    assert env.lib.get_album(album.id).album == after, (ascii(after), ascii(env.lib.get_album(album.id).album))
    assert {item.id: item.album for item in env.lib.get_album(album.id).items()} == edited
