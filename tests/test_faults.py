"""Faults during real runs: files that vanish or rot, a full disk, odd names, a busy library.

A fault meant to hit a run mid-way is applied while the run is held there by
the library's write lock (tests/gates.py), not while it happens to be slow.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from .audio import make_track
from .consistency import consistent
from .gates import in_flight, library_write_lock, off_the_library, running_job, wait_for, wait_in_flight
from .libenv import BEET, LibraryEnv, audio_files, tmpfs
from .servers import beet_web, web_settings
from .shared import add_many


def start_cli(env: LibraryEnv, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([BEET, *args], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_at_work(env: LibraryEnv, proc: subprocess.Popen[str], timeout: float = 30) -> int:
    """Until the run has selected its items and started on one (journaled it)."""

    def alive() -> None:
        assert proc.poll() is None, proc.communicate()

    return wait_in_flight(env, timeout=timeout, alive=alive)


def test_files_that_vanish_or_rot_after_selection(env: LibraryEnv) -> None:
    batch = 5
    env.configure(unmarked={"batch_size": batch})
    ids = add_many(env, 4 * batch)
    vanishing, rotting = env.item(ids[-1]), env.item(ids[-2])  # in the run's last batch
    with library_write_lock(env):  # the run waits at its first commit: the last batch is not loaded yet
        run = start_cli(env, "process-unmarked")
        wait_at_work(env, run)
        os.remove(vanishing.path)
        Path(os.fsdecode(rotting.path)).write_bytes(os.urandom(3000))
        assert in_flight(env) <= batch and running_job(env)["current"] == 0, "held in the first batch"
    out, err = run.communicate(timeout=120)

    assert run.returncode == 1
    assert f"file not found: {os.fsdecode(vanishing.path)}" in err
    assert f"error reading {os.fsdecode(rotting.path)}" in err
    assert "20 processed, 18 succeeded, 2 failed" in out
    assert env.beet_ids("unmarked:true") == sorted([vanishing.id, rotting.id])
    assert env.item(rotting.id).path == rotting.path and os.path.exists(rotting.path)
    env.item(vanishing.id).remove()  # the user deleted it; the rest must be in order
    consistent(env, env.incoming, env.lib_path)


@pytest.fixture
def small_disk(env: LibraryEnv) -> Iterator[Path]:
    """A 1 MiB filesystem (tmpfs) inside the test's directory."""
    with tmpfs(env.temp_path, "small-disk", "1m") as mount:
        yield mount


def fill(directory: Path) -> Path:
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as out:
        for size in (65536, 1024, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a size-limited tmpfs needs root (CI runs as root)")
def test_disk_full_during_tag_writes_harms_no_file(env: LibraryEnv, small_disk: Path) -> None:
    items = [env.add_track(f"t{n}.{ext}", {"title": f"  Song {n} ft. X", "artist": "A"}, where=small_disk)
             for n, ext in enumerate(["mp3", "flac", "ogg", "mp3"])]
    before = {f: f.read_bytes() for f in audio_files(small_disk)}
    env.lib.get_item(items[0].id)  # the library itself is not on the small disk
    filler = fill(small_disk)
    # titles the rules change into ones that need room to grow (only changed fields are written)
    env.beet("modify", "-y", "-M", "title=" + "Long  " * 700 + "ft. X", "artist:A")

    result = env.beet("normalize-unmarked", check=False)

    assert result.returncode == 1
    reported = [line for line in result.stderr.splitlines()
                if line.startswith("unmarked: error writing") and "No space left on device" in line]
    assert len(reported) == 4, result.stderr
    assert {f: f.read_bytes() for f in audio_files(small_disk)} == before, "every file byte-identical"
    assert env.beet_ids("unmarked:normalize") == sorted(i.id for i in items)
    filler.unlink()
    env.beet("normalize-unmarked")
    assert env.beet_ids("unmarked:normalize") == []


def test_file_names_that_are_not_utf8(env: LibraryEnv) -> None:
    raw = os.fsencode(env.incoming) + b"/caf\xe9 \xff\xfe.mp3"  # Latin-1 bytes: not UTF-8
    make_track(Path(os.fsdecode(raw)), {"title": "Caf\u00e9  Song", "artist": "Odd Names"})
    env.add_tracks([("plain.ogg", {"title": "Plain", "artist": "Odd Names"})])
    item = env.lib.items("title:Plain").get()
    from beets.library import Item

    odd = Item.from_path(raw)
    env.lib.add(odd)
    web_settings(env)
    server = beet_web(env)
    try:
        listing = server.get("/api/unmarked").json()
        assert listing["count"] == 2
        assert any("caf" in i["path"] and "\ufffd" in i["path"] for i in listing["items"])
        done = server.post("/api/process-unmarked").json()
    finally:
        server.stop()
    assert (done["status"], done["succeeded"], done["failed"]) == ("completed", 2, 0)
    moved = env.item(odd.id)
    assert moved.path.endswith("Singles/Odd Names - Café Song.mp3".encode()) and os.path.exists(moved.path)
    assert not os.path.exists(raw) and env.item(item.id).get("renamed")
    consistent(env, env.incoming, env.lib_path)


def test_paths_near_the_length_limit(env: LibraryEnv) -> None:
    deep = env.incoming
    for n in range(15):  # ~3.8 kB of directory names, near Linux's 4096-byte PATH_MAX
        deep = deep / (f"{n:02d}" + "d" * 250)
    tags = {"title": "T" * 400, "artist": "A" * 300, "album": "B" * 300}
    track = env.add_track("f" * 240 + ".flac", tags, where=deep)
    assert len(os.fsencode(track.path)) > 3900
    result = env.beet("process-unmarked")
    assert "1 succeeded" in result.stdout
    moved = env.item(track.id)
    assert os.path.exists(moved.path) and moved.path.startswith(os.fsencode(env.lib_path))
    assert all(len(part) <= 255 for part in moved.path.split(b"/")), "beets truncates each name"
    consistent(env, env.incoming, env.lib_path)


def test_tags_cannot_steer_a_file_out_of_the_library(env: LibraryEnv) -> None:
    evil = {"title": "../../../../../../tmp/escaped", "artist": "..", "album": "/etc"}
    item = env.add_track("evil.mp3", evil)
    env.beet("process-unmarked")
    moved = env.item(item.id)
    assert moved.path.startswith(os.fsencode(env.lib_path) + b"/")
    assert os.path.realpath(moved.path).startswith(os.path.realpath(os.fsencode(env.lib_path)))
    assert not Path("/tmp/escaped.mp3").exists()


def collect(stream: IO[str] | None, lines: list[str]) -> None:
    """Gather a process's output lines as they come."""
    assert stream is not None
    for line in stream:
        lines.append(line)


def test_library_locked_past_the_timeout_mid_job(env: LibraryEnv) -> None:
    """Another writer holds the library while the run has files moved and
    retagged but not recorded, longer than beets' 5 s timeout."""
    env.configure(unmarked={"batch_size": 5})
    add_many(env, 20)
    lines: list[str] = []
    with library_write_lock(env):
        run = start_cli(env, "process-unmarked")
        reader = threading.Thread(target=collect, args=(run.stderr, lines), daemon=True)
        reader.start()
        wait_at_work(env, run)
        wait_for(lambda: any("library locked; retrying" in line for line in lines),
                 "a commit that waited past the timeout", timeout=60)
    out = run.stdout.read() if run.stdout else ""
    assert run.wait(timeout=120) == 0, "".join(lines)
    reader.join(timeout=10)
    err = "".join(lines)
    assert "library locked; retrying" in err
    assert "20 succeeded, 0 failed" in out
    assert env.beet_ids("unmarked:true") == [], "no marker write lost"
    consistent(env, env.incoming, env.lib_path)


def test_beet_ls_and_modify_in_other_terminals_during_a_job(env: LibraryEnv) -> None:
    env.configure(unmarked={"batch_size": 5})
    ids = add_many(env, 20)
    others = []
    with library_write_lock(env) as gate:
        run = start_cli(env, "process-unmarked")
        wait_at_work(env, run)
        with off_the_library(env, gate):  # mid-run, between two of its steps (see gates.py)
            others.append(env.beet("ls", "-f", "$id", "unmarked:true", check=False))
            others.append(env.beet("modify", "-y", "-W", "-M", "comments=touched 0", f"id:{ids[-1]}", check=False))
            assert run.poll() is None, "the job was running all along"
    while run.poll() is None:
        others.append(env.beet("ls", "-f", "$id", "unmarked:true", check=False))
        others.append(env.beet("modify", "-y", "-W", "-M", f"comments=touched {len(others)}", f"id:{ids[-1]}",
                               check=False))
    _out, err = run.communicate()
    assert run.returncode == 0, err
    assert len(others) >= 2 and all(o.returncode == 0 for o in others), [o.stderr for o in others if o.returncode]
    assert env.beet_ids("unmarked:true") == []
    assert env.item(ids[-1]).comments.startswith("touched"), "the job did not overwrite another writer's change"
    consistent(env, env.incoming, env.lib_path)
