"""The untearable tag write and the journal repair, on real files and real `beet` runs.

In place when the tag fits its padding (same inode, same size), in place
behind a backup copy when it does not (same inode, same samples, the backup
gone after); a full disk or an interrupt leaves the file as it was and no
temp file or backup behind;
a journal entry that cannot be repaired is reported once and set aside, and
paths with braces are logged as they are.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import mediafile
import pytest
from beets.library import Item, WriteError

from beetsplug.unmarked.files import (
    BACKUP_SUFFIX,
    TEMP_SUFFIX,
    _clone_or_copy,
    _create_temp,
    _temp_prefix,
    remove_stale_temps,
    stale_temps,
    write_fields,
    write_tags,
)
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import Intent, Journal, pending

from .consistency import consistent
from .fulltracks import base_track, full_track, samples_hash
from .libenv import LibraryEnv, audio_files, read_only, tmpfs
from .shared import start_beet
from .signals import sigint_ignored
from .test_untearable import newest_job, temps

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounting a size-limited tmpfs needs root (CI runs as root)")


def add(env: LibraryEnv, path: Path) -> Item:
    item = Item.from_path(str(path))
    env.lib.add(item)
    return item


def title_in_file(path: Path) -> str:
    return mediafile.MediaFile(str(path)).title


# --- which route ------------------------------------------------------------------


@pytest.mark.fast
@pytest.mark.parametrize("ext", ["flac", "ogg", "mp3", "opus", "wav", "aiff", "m4a"])
def test_a_tag_that_fits_is_written_in_place_one_that_grows_behind_a_backup(env: LibraryEnv, ext: str) -> None:
    path = full_track(env.lib_path / f"song.{ext}", {"title": "Song ft Guest", "artist": "A"}, padding=0, seconds=5)
    item = add(env, path)
    samples, first = samples_hash(path), path.stat()

    item.title = "Song featuring Guest, a title that no longer fits"
    written = write_tags(item)
    assert (written.route, written.backup, written.warning) == ("backed up", None, None), "its backup is gone"
    grown = path.stat()
    assert grown.st_ino == first.st_ino and grown.st_size > first.st_size, "the same file, grown"
    assert title_in_file(path) == item.title and samples_hash(path) == samples
    assert item.mtime == item.current_mtime(), "Item.write's own bookkeeping, for the grown file too"

    for title in ("Song feat. Guest", "Song featuring Guest, a bit longer than before"):  # shorter, then longer
        item.title = title
        assert write_tags(item).route == "in place", "the resize left mutagen's default padding: room to grow"
        now = path.stat()
        assert (now.st_ino, now.st_size) == (grown.st_ino, grown.st_size)
        assert title_in_file(path) == title and samples_hash(path) == samples
    assert temps(env.lib_path) == []


@pytest.mark.fast
@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_a_file_without_an_id3_chunk_is_written_behind_a_backup(env: LibraryEnv, ext: str) -> None:
    """mutagen inserts the chunk before it asks about padding: never without a backup."""
    path = env.lib_path / f"bare.{ext}"
    shutil.copyfile(base_track(ext, 3), path)  # as the encoder wrote it: no tags at all
    item = add(env, path)
    inode, samples = path.stat().st_ino, samples_hash(path)
    item.title = "Now Tagged"
    assert write_tags(item).route == "backed up"
    assert path.stat().st_ino == inode and samples_hash(path) == samples and title_in_file(path) == "Now Tagged"
    assert temps(env.lib_path) == []


@pytest.mark.fast
def test_plenty_of_padding_is_kept_not_shrunk(env: LibraryEnv) -> None:
    """mutagen's default would cut padding above ~10 KiB down (a resize that
    moves the audio); in place keeps it as it is."""
    path = full_track(env.lib_path / "roomy.flac", {"title": "T"}, padding=200_000, seconds=5)
    item = add(env, path)
    before = path.stat()
    item.title = "A Longer Title"
    assert write_tags(item).route == "in place"
    assert (path.stat().st_ino, path.stat().st_size) == (before.st_ino, before.st_size)


@pytest.mark.fast
def test_a_symlinked_file_is_written_behind_its_link(env: LibraryEnv) -> None:
    real = full_track(env.temp_path / "elsewhere" / "real.ogg", {"title": "T"}, padding=0, seconds=5)
    link = env.lib_path / "link.ogg"
    link.symlink_to(real)
    item = add(env, link)
    inode = real.stat().st_ino
    item.title = "A Title That Needs Room"
    assert write_tags(item).route == "backed up"
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.stat().st_ino == inode and title_in_file(real) == item.title
    assert temps(env.lib_path) == [] and temps(real.parent) == []


@pytest.mark.fast
def test_the_write_keeps_mode_and_owner(env: LibraryEnv) -> None:
    path = full_track(env.lib_path / "owned.mp3", {"title": "T"}, padding=0, seconds=5)
    os.chmod(path, 0o640)
    if ROOT:
        os.chown(path, 65534, 65534)
    item = add(env, path)
    before = path.stat()
    item.title = "A Title That Needs Room"
    assert write_tags(item).route == "backed up"
    after = path.stat()
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)


def test_a_read_only_file_gets_no_backup_and_no_write(env: LibraryEnv) -> None:
    path = full_track(env.lib_path / "locked.flac", {"title": "T"}, padding=0, seconds=5)
    item = add(env, path)
    data = path.read_bytes()
    item.title = "A Title That Needs Room"
    with read_only(path), pytest.raises(WriteError) as raised:
        write_tags(item)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == data and temps(env.lib_path) == []


@pytest.mark.fast
def test_a_file_name_near_the_limit_gets_a_backup_name_that_fits(env: LibraryEnv) -> None:
    path = full_track(env.lib_path / ("n" * 245 + ".flac"), {"title": "T"}, padding=0, seconds=5)
    item = add(env, path)
    item.title = "A Title That Needs Room"
    assert write_tags(item).route == "backed up" and temps(env.lib_path) == []
    # What a write killed mid-copy leaves (a backup; an older release's temp copy):
    # found and removed by the repair helper.
    leftovers = []
    for suffix in (BACKUP_SUFFIX, TEMP_SUFFIX):
        fd, leftover = _create_temp(os.fsencode(env.lib_path), _temp_prefix(os.fsencode(path.name)), suffix)
        os.close(fd)
        assert len(os.path.basename(leftover)) <= 255
        leftovers.append(leftover)
    assert stale_temps(os.fsencode(path)) == sorted(leftovers)
    assert remove_stale_temps(os.fsencode(path)) == sorted(leftovers) and temps(env.lib_path) == []


@pytest.fixture
def btrfs(env: LibraryEnv) -> Iterator[Path]:
    """A 256 MiB btrfs (a filesystem with reflinks) on a loop device."""
    image, mount = env.temp_path / "btrfs.img", env.temp_path / "btrfs"
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    mount.mkdir()
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.skipif(not ROOT or not shutil.which("mkfs.btrfs") or not shutil.which("filefrag"),
                    reason="needs root, mkfs.btrfs and filefrag")
def test_on_btrfs_the_copy_is_a_reflink(env: LibraryEnv, btrfs: Path) -> None:
    path = full_track(btrfs / "t.flac", {"title": "Song ft Guest"}, padding=0)
    fd, temp = _create_temp(os.fsencode(btrfs), _temp_prefix(os.fsencode(path.name)), BACKUP_SUFFIX)
    try:
        with open(path, "rb") as src:
            _clone_or_copy(src.fileno(), fd)
    finally:
        os.close(fd)
    os.sync()
    extents = subprocess.run(["filefrag", "-v", os.fsdecode(temp)], capture_output=True, text=True, check=True).stdout
    assert "shared" in extents, extents
    assert Path(os.fsdecode(temp)).read_bytes() == path.read_bytes()
    os.remove(temp)

    item = add(env, path)
    samples = samples_hash(path)
    item.title = "Song featuring Guest"
    assert write_tags(item).route == "backed up"
    assert samples_hash(path) == samples and title_in_file(path) == item.title and temps(btrfs) == []


# --- a full disk ------------------------------------------------------------------


@pytest.fixture
def disk(env: LibraryEnv) -> Iterator[Path]:
    """A 16 MiB tmpfs inside the test's directory."""
    with tmpfs(env.temp_path, "disk", "16m") as mount:
        yield mount


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


@needs_root
def test_no_room_for_the_backup(env: LibraryEnv, disk: Path) -> None:
    """Two 6.5 MB tracks on a 16 MiB disk: no room for a backup of either."""
    items = [add(env, full_track(disk / f"t{n}.flac", {"title": f"Song {n} ft Guest"}, padding=0)) for n in range(2)]
    before = {f: f.read_bytes() for f in audio_files(disk)}
    assert free_bytes(disk) < min(len(b) for b in before.values())
    env.configure(unmarked={"feat_format": "featuring"})

    result = env.beet("normalize-unmarked", check=False)

    assert result.returncode == 1
    reported = [line for line in result.stderr.splitlines() if line.startswith("unmarked: error writing")]
    assert len(reported) == 2 and all("No space left on device" in line and "unchanged" in line for line in reported)
    assert all(".unmarked-" not in line for line in reported), "the user's file is named, not the temp"
    assert {f: f.read_bytes() for f in audio_files(disk)} == before and temps(disk) == []
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    env.beet("normalize-unmarked")
    titles = [title_in_file(env.item(i.id).filepath) for i in items]
    assert titles == ["Song 0 featuring Guest", "Song 1 featuring Guest"]


@needs_root
def test_disk_fills_while_the_tag_grows(env: LibraryEnv, disk: Path) -> None:
    """Room for the backup, not for the bigger tag: the write fails part way,
    the file's bytes come back from the backup (in place), the backup goes."""
    path = full_track(disk / "t.flac", {"title": "Song ft Guest"}, padding=0)
    item = add(env, path)
    data, inode = path.read_bytes(), path.stat().st_ino
    page = os.statvfs(disk).f_frsize
    copy_needs = -(-len(data) // page) * page
    with open(disk / "filler", "wb") as filler:
        filler.write(b"\0" * (free_bytes(disk) - copy_needs))
    assert free_bytes(disk) == copy_needs

    item.title = "Song featuring Guest"
    with pytest.raises(WriteError) as raised:
        write_tags(item)

    message = str(raised.value)
    assert str(path) in message and "No space left on device" in message and ".unmarked-" not in message
    assert path.read_bytes() == data and temps(disk) == []
    assert path.stat().st_ino == inode


# --- interrupted and killed runs ---------------------------------------------------


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_during_a_backed_up_write_leaves_no_backup(env: LibraryEnv) -> None:
    """SIGINT the moment a backup exists: the run's undo puts the file back
    from it (or drops it, the write being done) on its way out (no repair needed)."""
    for n in range(24):
        add(env, full_track(env.lib_path / f"{n:02d}.flac", {"title": f"Song {n} ft Guest"}, padding=0))
    env.configure(unmarked={"feat_format": "featuring"})
    caught = 0
    for _ in range(4):
        proc = start_beet(env, "normalize-unmarked", text=False)
        assert not sigint_ignored(proc.pid), "the run can be interrupted (conftest: sigint_delivered)"
        seen: list[Path] = []
        while proc.poll() is None and not seen:
            seen = temps(env.lib_path)
        proc.send_signal(signal.SIGINT)
        caught += any(t.exists() for t in seen)  # still there after the signal went out
        proc.communicate(timeout=60)
        assert temps(env.lib_path) == [], "a backup outlived the interrupt"
        if caught >= 2:
            break
        env.beet("unmark", "--all")
    assert caught >= 1, "no interrupt landed while a backup existed"
    assert all(samples_hash(f) == samples_hash(audio_files(env.lib_path)[0]) for f in audio_files(env.lib_path))


def kill_with_pending(env: LibraryEnv, op: str = "normalize-unmarked", kind: str = "tags") -> list[Intent]:
    """SIGKILL ``beet OP`` once it has begun three tag writes (``kind="tags"``)
    or moves (``"item"``; and one of them is done) before its first commit;
    return what the journal holds."""
    store = JobStore(store_path(env.lib))
    before = newest_job(store)
    proc = start_beet(env, op, text=False)
    found: list[Intent] = []
    deadline = time.monotonic() + 60

    def ready() -> bool:  # (work is journaled a wave at a time, before any of it is done)
        return len(found) >= 3 and (kind != "item" or any(os.path.exists(m.dst) for m in found))

    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        found = [m for m in pending(store) if m.kind == kind and m.job > before]
        time.sleep(0.002)
    proc.kill()
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return [m for m in pending(store) if m.kind == kind]


def braced_tracks(env: LibraryEnv, count: int) -> list[Item]:
    where = env.lib_path / "{Live} at {0}"
    return [add(env, full_track(where / f"Track {{{n}}} {{Live}}.flac", {"title": f"Song {n} ft Guest"},
                                padding=0, seconds=5)) for n in range(count)]


def test_repair_sets_aside_a_file_that_is_gone_and_logs_braces_as_they_are(env: LibraryEnv) -> None:
    """issue 9 case 4 and issue 10 case 7: the file of an item with a pending
    tag write is deleted after a kill; every path has braces in it."""
    items = braced_tracks(env, 30)
    env.configure(unmarked={"feat_format": "featuring", "batch_seconds": 30})  # nothing committed before the kill
    journaled = sorted({m.entity for m in kill_with_pending(env)})
    assert len(journaled) >= 3
    gone = env.item(journaled[0])
    os.remove(gone.path)

    second = env.beet("normalize-unmarked", check=False)

    assert "Traceback" not in second.stderr
    report = [line for line in second.stderr.splitlines() if "set aside" in line]
    assert len(report) == 1, second.stderr
    assert report[0].startswith(f"unmarked: item {gone.id}: restoring the tags")
    assert os.fsdecode(gone.path) in report[0] and "No such file" in report[0]
    restored = re.findall(r"item (\d+): tags written before an interrupted run ended were not recorded; (.*) has",
                          second.stderr)
    for other, path in restored:  # (a journaled write the kill came before left its file alone: nothing to say)
        assert int(other) in journaled[1:] and path == os.fsdecode(env.item(int(other)).path)
    assert f"{len(items)} processed, {len(items) - 1} succeeded, 1 failed" in second.stdout
    assert pending(JobStore(store_path(env.lib))) == []

    third = env.beet("normalize-unmarked", check=False)
    assert "set aside" not in third.stderr and "interrupted run" not in third.stderr, "reported once"
    env.item(gone.id).remove()
    assert temps(env.lib_path) == []
    consistent(env, env.lib_path)


def test_repair_sets_aside_a_move_it_cannot_finish(env: LibraryEnv) -> None:
    """A move killed after its copy, before its commit, whose new name is in a
    directory that has become unwritable (so the name the library does not
    hold cannot be removed): reported and set aside, the run goes on."""
    braced_tracks(env, 6)
    env.configure(unmarked={"feat_format": "featuring", "batch_seconds": 30})
    kill_with_pending(env)  # a dead job, as the journal knows it
    stuck = add(env, full_track(env.lib_path / "{Stuck}" / "{0}.flac", {"title": "Stuck ft Guest"}, seconds=5))
    store = JobStore(store_path(env.lib))
    dst = env.lib_path / "Singles" / "{Main} - Copied {Live}.flac"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(Path(os.fsdecode(stuck.path)).read_bytes())
    Journal(store, newest_job(store)).intend_many([("item", stuck.id, stuck.path, os.fsencode(dst))])

    with read_only(dst.parent):
        second = env.beet("normalize-unmarked", check=False)

    assert "Traceback" not in second.stderr
    report = [line for line in second.stderr.splitlines() if "set aside" in line]
    assert len(report) == 1, second.stderr
    assert f"item {stuck.id}: the path repair" in report[0] and os.fsdecode(stuck.path) in report[0]
    assert "Operation not permitted" in report[0] or "Permission denied" in report[0]
    assert pending(store) == []
    assert env.item(stuck.id).path == stuck.path, "not repaired: the item stays with its file"


def test_path_repairs_log_braces_as_they_are(env: LibraryEnv) -> None:
    """issue 10 case 7 for the path repair: destinations with braces."""
    for n in range(12):
        add(env, full_track(env.lib_path / "in" / f"{n}.flac", {"title": f"Song {{{n}}} ft Guest", "artist": "{Main}"},
                            padding=0, seconds=5))
    env.configure(unmarked={"feat_format": "featuring", "batch_seconds": 30})
    moved = [m for m in kill_with_pending(env, "process-unmarked", kind="item") if os.path.exists(m.dst)]
    assert moved and all(b"{" in m.dst for m in moved)

    second = env.beet("process-unmarked")

    assert "Logging error" not in second.stderr and "Traceback" not in second.stderr
    for move in moved:  # placed (moves.py), not recorded: the name the library does not hold goes
        assert (f"item {move.entity}: placed at {os.fsdecode(move.dst)} but not recorded; that name removed, "
                f"the file stays at {os.fsdecode(move.src)}") in second.stderr
    assert temps(env.lib_path) == []
    consistent(env, env.lib_path)


@pytest.mark.fast
def test_a_file_moved_away_during_a_backed_up_write_gets_the_tags_where_it_went(
        env: LibraryEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another program (`beet move`) renames the file between its backup and
    its write: the tags go into the file where it went (the write holds the
    inode the backup was made of), the old path is not re-created, the backup
    is gone. The instant is made certain by moving the file from inside the
    write, just after the backup is on disk (the only stand-in used: the race
    itself is real)."""
    import beetsplug.unmarked.files as files

    path = full_track(env.lib_path / "song.flac", {"title": "Song ft Guest", "artist": "A"}, padding=0, seconds=2)
    samples = samples_hash(path)
    elsewhere = env.lib_path / "moved by another program.flac"
    sync = files.sync_dirs

    def sync_then_move(directories: Iterable[bytes]) -> None:  # the backup's directory synced: the write is next
        sync(directories)
        os.rename(path, elsewhere)

    monkeypatch.setattr(files, "sync_dirs", sync_then_move)
    title = "Song featuring Guest, a title that no longer fits"
    assert write_fields(os.fsencode(path), {"title": title}, id3v23=False).route == "backed up"
    assert not path.exists(), "the old path was not re-created"
    assert audio_files(env.lib_path) == [elsewhere]
    assert title_in_file(elsewhere) == title and samples_hash(elsewhere) == samples
    assert temps(env.lib_path) == []
