"""normalize-unmarked, rename-unmarked, process-unmarked through the real `beet` on real files."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import sqlite3
import struct
import subprocess
import sys
import termios
import unicodedata
from pathlib import Path

import pytest
from beets.library import Item

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.operations import OPERATIONS
from beetsplug.unmarked.runner import Job, JobConfig, open_job

from .audio import MESSY_TRACKS, make_track, read_tags
from .consistency import consistent
from .libenv import BEET, LibraryEnv, audio_files, read_only

EXTS = ["flac", "ogg", "mp3"]

# What the default rules make of MESSY_TRACKS (title, artist, album).
NORMALIZED = [
    ("Hello World", "The Band", "First Album"),
    ("Army of Me", "Björk", "Post Édition"),
    ("Song feat. Someone", "Main Artist", "Collabs"),
    ("Other Song (feat. Guest)", "Main Artist", "Collabs"),
    ("Third feat. Guest", "Main Artist feat. Guest", "Collabs"),
    ("Clean Title", "Clean Artist", "Clean Album"),
]


def add_messy(env: LibraryEnv, where: Path | None = None) -> list[Item]:
    return env.add_tracks(
        ((f"track{i}.{EXTS[i % 3]}", {**tags, "tracknumber": str(i + 1)}) for i, tags in enumerate(MESSY_TRACKS)),
        where,
    )


def fresh(env: LibraryEnv, items: list[Item]) -> list[Item]:
    return [env.item(item.id) for item in items]


def file_tags(item: Item) -> tuple[str, str, str]:
    tags = read_tags(Path(os.fsdecode(item.path)))
    return tags["title"][0], tags["artist"][0], tags["album"][0]


def test_normalize_fixes_tags_in_library_and_files(env: LibraryEnv) -> None:
    items = add_messy(env)
    clean_file = Path(os.fsdecode(items[5].path))
    clean_before = (clean_file.read_bytes(), clean_file.stat().st_mtime_ns)

    result = env.beet("normalize-unmarked")

    assert "normalize-unmarked: 6 processed, 6 succeeded, 0 failed, 0 skipped" in result.stdout
    for item, (title, artist, album) in zip(fresh(env, items), NORMALIZED):
        assert (item.title, item.artist, item.album) == (title, artist, album)
        assert file_tags(item) == (title, artist, album), "the file's tags are written too"
        assert unicodedata.is_normalized("NFC", item.artist + item.album)
        assert item.get("normalized") and item.get("renamed") is None
        assert item.path.startswith(os.fsencode(env.incoming)), "normalize does not move"
    assert (clean_file.read_bytes(), clean_file.stat().st_mtime_ns) == clean_before, "no change, no write"
    assert env.beet_ids("unmarked:normalize") == []
    assert "0 processed" in env.beet("normalize-unmarked").stdout


def test_rename_moves_like_beet_move_and_keeps_tags(env: LibraryEnv) -> None:
    items = add_messy(env)
    result = env.beet("rename-unmarked")
    assert "6 succeeded, 0 failed" in result.stdout
    for item, tags in zip(fresh(env, items), MESSY_TRACKS):
        assert item.path == item.destination(), "at beets' destination"
        assert item.path.startswith(os.fsencode(env.lib_path)), "brought into the library"
        assert os.path.exists(item.path)
        assert item.title == tags["title"], "rename leaves tags alone"
        assert item.get("renamed") and item.get("normalized") is None
    assert audio_files(env.incoming) == []
    assert len(audio_files(env.lib_path)) == 6


def test_process_normalizes_then_renames_in_one_pass(env: LibraryEnv) -> None:
    items = add_messy(env)
    env.beet("process-unmarked")
    done = fresh(env, items)
    for item, (title, artist, album) in zip(done, NORMALIZED):
        assert (item.title, item.artist) == (title, artist)
        assert file_tags(item) == (title, artist, album)
        assert item.path == item.destination()
        assert item.get("renamed") and item.get("normalized")
    # the path is built from the normalized tags
    assert done[0].path.endswith(b"Singles/The Band - Hello World.flac")
    assert env.beet_ids("unmarked:true") == []
    assert "0 processed" in env.beet("process-unmarked").stdout


def test_pretend_shows_changes_and_changes_nothing(env: LibraryEnv) -> None:
    items = add_messy(env)
    files = audio_files(env.incoming)
    snapshot = {f: f.read_bytes() for f in files}

    result = env.beet("process-unmarked", "--pretend")

    assert "title:   Hello   World  -> Hello World" in result.stdout
    assert "Singles/The Band - Hello World.flac" in result.stdout
    assert "(pretend: nothing was changed)" in result.stdout
    assert {f: f.read_bytes() for f in audio_files(env.incoming)} == snapshot
    assert [i.path for i in fresh(env, items)] == [i.path for i in items]
    assert fresh(env, items)[0].title == MESSY_TRACKS[0]["title"]
    assert env.beet_ids("unmarked:true") == sorted(i.id for i in items)
    # and the real run puts the file where pretend said
    env.beet("process-unmarked")
    assert fresh(env, items)[0].path.endswith(b"Singles/The Band - Hello World.flac")


def test_pretend_and_real_agree_on_album_paths(env: LibraryEnv) -> None:
    """Album-level fields come from the album row: it is normalized too."""
    items = add_messy(env)[2:5]  # the three "Collabs" tracks
    album = env.lib.add_album(items)
    album.albumartist = " Main   Artist "
    album.store()
    shown = env.beet("rename-unmarked", "--pretend").stdout + env.beet("process-unmarked", "-p").stdout
    assert "Main Artist/Collabs/03 Song feat. Someone.mp3" in shown
    env.beet("process-unmarked")
    paths = sorted(os.fsdecode(i.path) for i in fresh(env, items))
    assert paths[0].endswith("Main Artist/Collabs/03 Song feat. Someone.mp3")
    assert env.lib.get_album(album.id).albumartist == "Main Artist"


@pytest.mark.parametrize("batch_size", [3, 7, 200])
def test_albums_of_every_chunk_are_normalized_before_their_items_move(env: LibraryEnv, batch_size: int) -> None:
    """A chunk's albums go to the library with the commit of the chunk
    before's last batch (the first chunk's on their own): whatever the chunk
    size, every item lands under its album's normalized fields."""
    albums = []
    for number in range(4):
        tracks = [env.add_track(f"a{number}t{n}.ogg", {"title": f"Song {n}", "artist": "A", "tracknumber": str(n + 1),
                                                       "album": f"Album  {number} "}) for n in range(5)]
        album = env.lib.add_album(tracks)
        album.albumartist, album.album = f" Band   {number}", f"Album  {number} "
        album.store()
        albums.append(album.id)
    env.configure(unmarked={"batch_size": batch_size})
    run = env.beet("process-unmarked")
    assert "20 succeeded, 0 failed" in run.stdout
    for number, album_id in enumerate(albums):
        album = env.lib.get_album(album_id)
        assert (album.albumartist, album.album) == (f"Band {number}", f"Album {number}")
        for item in album.items():
            assert item.path == item.destination()
            assert os.fsdecode(item.path).split(os.sep)[-3:-1] == [f"Band {number}", f"Album {number}"]
    consistent(env, env.incoming, env.lib_path)


def test_force_and_query_narrowing(env: LibraryEnv) -> None:
    items = add_messy(env)
    env.beet("rename-unmarked", "artist:Main")
    main = set(env.ids("artist:Main"))
    assert set(env.beet_ids("^unmarked:rename")) == main
    first = {i.id: i.get("renamed") for i in fresh(env, items) if i.id in main}
    assert "0 processed" in env.beet("rename-unmarked", "artist:Main").stdout
    forced = env.beet("rename-unmarked", "--force", "artist:Main").stdout
    assert "3 processed, 3 succeeded" in forced
    again = {i.id: i.get("renamed") for i in fresh(env, items) if i.id in main}
    assert all(again[i] > first[i] for i in main), "forced run renews the markers"


def test_missing_and_corrupt_files_fail_alone(env: LibraryEnv) -> None:
    items = add_messy(env)
    missing, corrupt = Path(os.fsdecode(items[1].path)), Path(os.fsdecode(items[0].path))
    missing.unlink()
    corrupt.write_bytes(os.urandom(4096))

    result = env.beet("process-unmarked", check=False)

    assert result.returncode == 1
    assert f"file not found: {missing}" in result.stderr
    assert f"error reading {corrupt}" in result.stderr
    assert "2 items failed" in result.stderr
    assert "6 processed, 4 succeeded, 2 failed" in result.stdout
    assert env.beet_ids("unmarked:true") == sorted([items[0].id, items[1].id])
    assert fresh(env, items)[0].path == items[0].path, "failed item stays where it was"
    assert corrupt.exists()


def test_read_only_file_and_directory(env: LibraryEnv) -> None:
    items = add_messy(env)
    locked_file = Path(os.fsdecode(items[0].path))
    target_dir = env.lib_path / "Singles"
    target_dir.mkdir()
    with read_only(locked_file), read_only(target_dir):
        result = env.beet("process-unmarked", check=False)
    assert result.returncode == 1
    assert f"error writing {locked_file}" in result.stderr
    assert str(target_dir) in result.stderr and "6 processed, 0 succeeded, 6 failed" in result.stdout
    # Tags of the writable files were written before their moves failed: the
    # library records them (no marker), so it matches the files.
    after = fresh(env, items)
    assert after[2].title == "Song feat. Someone" and file_tags(after[2])[0] == "Song feat. Someone"
    assert after[0].title == MESSY_TRACKS[0]["title"], "unwritable file: library unchanged"
    assert env.beet_ids("unmarked:true") == sorted(i.id for i in items)
    env.beet("process-unmarked")  # once writable, the next run finishes
    assert env.beet_ids("unmarked:true") == []


def test_collisions_get_unique_names_and_nothing_is_overwritten(env: LibraryEnv) -> None:
    tags = {"title": "Same", "artist": "Twin", "album": "A", "tracknumber": "1"}
    twins = env.add_tracks([("a.flac", tags), ("b.flac", tags)])
    squatter = env.lib_path / "Singles" / "Twin - Same.flac"
    squatter.parent.mkdir(parents=True)
    squatter.write_bytes(b"someone else's file")

    env.beet("rename-unmarked")

    paths = sorted(os.fsdecode(i.path) for i in fresh(env, twins))
    assert paths == [str(squatter.parent / "Twin - Same.1.flac"), str(squatter.parent / "Twin - Same.2.flac")]
    assert squatter.read_bytes() == b"someone else's file"
    assert len(audio_files(env.lib_path)) == 3


def test_album_art_follows_and_emptied_directories_are_pruned(env: LibraryEnv) -> None:
    old_dir = env.lib_path / "old place"
    items = env.add_tracks(
        ((f"{i}.{EXTS[i]}", {**tags, "tracknumber": str(i + 1)}) for i, tags in enumerate(MESSY_TRACKS[2:5])),
        where=old_dir,
    )
    album = env.lib.add_album(items)
    art = old_dir / "cover.jpg"
    art.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    album.artpath = os.fsencode(art)
    album.store()

    env.beet("rename-unmarked")

    moved = env.lib.get_album(album.id)
    new_dir = os.path.dirname(fresh(env, items)[0].path)
    assert new_dir.endswith(b"Main Artist/Collabs")
    assert moved.artpath == os.path.join(new_dir, b"cover.jpg")
    assert os.path.exists(moved.artpath)
    assert not old_dir.exists(), "emptied directory pruned, as beet move does"


def test_beets_path_settings_apply(env: LibraryEnv) -> None:
    env.configure(asciify_paths=True, replace={"[ ]": "_", r"[\\/]": "_"})
    items = add_messy(env)
    env.beet("process-unmarked")
    path = os.fsdecode(fresh(env, items)[1].path)
    assert path.endswith("Singles/Bjork_-_Army_of_Me.ogg")


def hold_library(env: LibraryEnv, op: str = "rename") -> Job:
    """A real job of this test process holding the library (its lock and its row)."""
    return open_job(env.lib, OPERATIONS[op], "artist:x", force=False, origin="test",
                    config=JobConfig.from_plugin(env.config["unmarked"]), log=logging.getLogger("beets"))


def test_second_run_is_refused_while_a_job_holds_the_library(env: LibraryEnv) -> None:
    add_messy(env)
    held = hold_library(env)
    result = env.beet("process-unmarked", check=False)
    assert result.returncode == 1
    assert f"job {held.id} (rename, from test, pid {os.getpid()}" in result.stderr
    assert "--wait" in result.stderr
    assert env.beet_ids("unmarked:true") == env.ids()

    waiting = subprocess.Popen([BEET, "process-unmarked", "--wait"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = waiting.stdout.readline()
        assert f"waiting for job {held.id}" in out
        assert waiting.poll() is None
        held.close()  # the holder ends (its record says failed: it never ran)
        rest, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert "6 succeeded" in rest
    assert env.beet_ids("unmarked:true") == []


def test_a_claim_left_by_a_killed_process_does_not_block(env: LibraryEnv) -> None:
    items = add_messy(env)
    code = ("import logging, sys; from beets import config; from beetsplug.unmarked.runner import JobConfig, open_job;"
            "from beetsplug.unmarked.operations import OPERATIONS; from beets.library import Library;"
            "from beetsplug.unmarked import UnmarkedPlugin; config.read(); lib = Library(sys.argv[1], sys.argv[2]);"
            "job = open_job(lib, OPERATIONS['process'], '', force=False, origin='cli',"
            " config=JobConfig.from_plugin(UnmarkedPlugin().config), log=logging.getLogger('beets'));"
            " print(job.id, flush=True); import os; os._exit(0)")
    claimer = subprocess.run([sys.executable, "-c", code, str(env.temp_path / "library.db"), str(env.lib_path)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "BEETSDIR": str(env.temp_path)})
    dead = int(claimer.stdout)  # the process exited without ending its job: the kernel freed its lock
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []
    summary = JobStore(store_path(env.lib)).get(dead)
    assert summary["status"] == "interrupted" and "stopped" in summary["error"]
    assert len(items) == 6


@pytest.mark.parametrize("columns", [100, 0], ids=["sized-terminal", "pty-without-size"])
def test_progress_bar_only_on_a_terminal(env: LibraryEnv, columns: int) -> None:
    env.add_tracks((f"t{i}.ogg", {"title": f" t{i} ", "artist": "A"}) for i in range(30))
    piped = env.beet("normalize-unmarked")
    assert "it/s" not in piped.stderr and "%|" not in piped.stderr
    env.beet("unmark", "--all")
    parent, child = pty.openpty()
    if columns:
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    try:
        proc = subprocess.run([BEET, "normalize-unmarked", "-f"], stderr=child, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "BEETSDIR": str(env.temp_path)}, timeout=120)
        os.close(child)
        bar = b""
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:
                break
            if not chunk:
                break
            bar += chunk
    finally:
        os.close(parent)
    assert proc.returncode == 0
    assert b"normalize-unmarked: 100%" in bar and b"30/30" in bar


def test_import_hook_processes_each_task_with_one_marker_write(env: LibraryEnv) -> None:
    env.configure(unmarked={"auto": True})
    album_dir = env.temp_path / "import" / "album"
    for i, tags in enumerate(MESSY_TRACKS[2:5]):
        make_track(album_dir / f"{i}.{EXTS[i]}", {**tags, "tracknumber": str(i + 1)})
    env.beet("import", "-A", "-C", "-q", str(album_dir.parent))
    imported = list(env.lib.items())
    assert len(imported) == 3
    for item in imported:
        assert item.path == item.destination() and item.path.startswith(os.fsencode(env.lib_path))
        assert item.title in {"Song feat. Someone", "Other Song (feat. Guest)", "Third feat. Guest"}
        assert file_tags(item)[0] == item.title
    stamps = {(i.get("normalized"), i.get("renamed")) for i in imported}
    assert len(stamps) == 1 and None not in next(iter(stamps)), "one marker write for the task"
    assert audio_files(album_dir) == [], "as-is import left them here; the hook moved them in"


def test_markers_and_moves_commit_per_batch_not_per_item(env: LibraryEnv) -> None:
    """Markers of a run share a handful of commit times, not one per item."""
    env.add_tracks((f"t{i}.mp3", {"title": f"t {i}", "artist": "A", "album": "B"}) for i in range(120))
    env.beet("rename-unmarked")
    with sqlite3.connect(env.settings["library"]) as conn:
        stamps = {row[0] for row in conn.execute("SELECT value FROM item_attributes WHERE key = 'renamed'")}
    assert 1 <= len(stamps) <= 10
