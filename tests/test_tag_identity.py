"""A tag write that must grow the tag keeps the file's identity (issue 18, item 3).

The write goes into the same file (a backup copy first, see files.py), so a
second hard link sees the new tags, the inode, owner, mode, ``user.*``
extended attributes and the ACL stay; a writable file in a directory that
refuses new files is written as ``beet write`` would (its backup goes beside
the job store, or, when none can be made, it is written unprotected with a
warning). Real files, the real ``beet`` command; both workers (one item: this
process; six: the helper process).
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mediafile
import pytest
from beets.library import Item

from beetsplug.unmarked.files import write_fields
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import Intent, Journal, pending, tags_entry

from .fulltracks import full_track, samples_hash
from .libenv import LibraryEnv
from .test_untearable import temps

ROOT = os.geteuid() == 0
NOBODY = 65534
needs_root = pytest.mark.skipif(not ROOT, reason="chattr, chown and setpriv need root (CI runs as root)")

# An access ACL as the kernel stores it (xattr ``system.posix_acl_access``):
# owner rw-, user 65534 r--, group r--, mask r--, other ---.
_ACL_UNDEFINED = 0xFFFFFFFF
ACL = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, who) for tag, perm, who in [
    (0x01, 6, _ACL_UNDEFINED), (0x02, 4, NOBODY), (0x04, 4, _ACL_UNDEFINED), (0x10, 4, _ACL_UNDEFINED),
    (0x20, 0, _ACL_UNDEFINED)])
ACL_XATTR = "system.posix_acl_access"


def title_in_file(path: Path) -> str:
    return mediafile.MediaFile(str(path)).title


def backups(root: Path) -> list[Path]:
    return sorted(root.rglob("*.unmarked-*.bak"))


def spare(env: LibraryEnv) -> Path:
    """Where backups go that the file's directory refuses: ``<job store>.backups``, beside it."""
    store = Path(store_path(env.lib))
    return store.with_name(store.name.removesuffix(".db") + ".backups")


@dataclass
class Track:
    """A library file with a second hard link outside the library and everything that makes its identity."""

    item_id: int
    path: Path
    link: Path
    inode: int
    samples: str
    mode: int
    owner: tuple[int, int]
    xattrs: dict[str, bytes]


def identity_track(env: LibraryEnv, name: str, where: Path) -> Track:
    """A track whose title grows under normalization (zero padding: the tag
    cannot fit), with a hard link, ``user.*`` xattrs, an ACL, its own mode and owner."""
    path = full_track(where / name, {"title": f"{name} ft Guest", "artist": "Main"}, padding=0, seconds=5)
    link = env.temp_path / "seeding" / name
    link.parent.mkdir(exist_ok=True)
    os.link(path, link)
    os.setxattr(path, "user.seeding.infohash", b"0123456789abcdef" * 2)
    os.setxattr(path, "user.comment", name.encode())
    if ROOT:
        os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o640)
    os.setxattr(path, ACL_XATTR, ACL)  # after chmod: the mask and the group bits are one
    info = path.stat()
    item = Item.from_path(str(path))
    env.lib.add(item)
    return Track(item.id, path, link, info.st_ino, samples_hash(path), stat.S_IMODE(info.st_mode),
                 (info.st_uid, info.st_gid), {key: os.getxattr(path, key) for key in os.listxattr(path)})


def assert_identity_kept(env: LibraryEnv, track: Track) -> None:
    path = Path(os.fsdecode(env.item(track.item_id).path))
    info = path.stat()
    title = f"{track.path.name} featuring Guest"
    assert title_in_file(path) == title, "the tags were written"
    assert title_in_file(track.link) == title, "the other hard link shows the new tags too"
    assert (info.st_ino, info.st_nlink) == (track.inode, 2), "same inode, both links kept"
    assert track.link.stat().st_ino == track.inode
    assert stat.S_IMODE(info.st_mode) == track.mode and (info.st_uid, info.st_gid) == track.owner
    assert {key: os.getxattr(path, key) for key in os.listxattr(path)} == track.xattrs, "xattrs and ACL kept"
    assert os.getxattr(path, ACL_XATTR) == ACL
    assert samples_hash(path) == track.samples


@pytest.mark.parametrize("count", [1, 6], ids=["in-process", "helper"])
@pytest.mark.parametrize("op", ["normalize-unmarked", "process-unmarked"])
def test_a_growing_tag_write_keeps_links_xattrs_acl_owner_and_mode(env: LibraryEnv, op: str, count: int) -> None:
    env.configure(unmarked={"feat_format": "featuring"})
    exts = ["flac", "ogg", "mp3"]
    tracks = [identity_track(env, f"Song {n}.{exts[n % 3]}", env.lib_path / "in") for n in range(count)]

    result = env.beet(op)

    assert f"{count} processed, {count} succeeded" in result.stdout, result.stdout
    for track in tracks:
        assert_identity_kept(env, track)
    assert backups(env.temp_path) == [] and temps(env.temp_path) == [], "every backup removed after the commit"


# --- a directory that refuses new files --------------------------------------------------


@contextmanager
def immutable(directory: Path) -> Iterator[None]:
    """``chattr +i``: nobody, root included, may create a file in it; its files stay writable."""
    subprocess.run(["chattr", "+i", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def locked_in(env: LibraryEnv, count: int = 2) -> tuple[Path, list[Track]]:
    where = env.lib_path / "locked"
    exts = ["flac", "ogg", "mp3"]
    return where, [identity_track(env, f"Kept {n}.{exts[n % 3]}", where) for n in range(count)]


@needs_root
@pytest.mark.parametrize("count", [1, 6], ids=["in-process", "helper"])
def test_a_file_in_a_directory_that_refuses_new_files_is_written_with_its_backup_beside_the_store(
        env: LibraryEnv, count: int) -> None:
    """As root (CI): ``chattr +i`` is a directory even root cannot create a file in."""
    env.configure(unmarked={"feat_format": "featuring"})
    where, tracks = locked_in(env, count)
    with immutable(where):
        result = env.beet("normalize-unmarked", check=False)
    assert result.returncode == 0, result.stderr
    assert "cannot make" not in result.stderr and "not protected" not in result.stderr
    for track in tracks:
        assert_identity_kept(env, track)
    assert spare(env).is_dir(), "the backups went beside the job store"
    assert backups(env.temp_path) == [], "and were removed after the commit"


@needs_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_a_writable_file_in_a_read_only_directory_is_written_as_a_normal_user(env: LibraryEnv) -> None:
    """The reproduction as a user sees it: ``chmod 555`` on the directory, the
    run as an ordinary user (uid 65534 via ``setpriv``; root ignores directory
    permissions), its library and files its own."""
    env.configure(unmarked={"feat_format": "featuring"})
    where, tracks = locked_in(env)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(env.temp_path)], check=True)
    os.chmod(where, 0o555)
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    beet_env = {**os.environ, "BEETSDIR": str(env.temp_path), "HOME": str(env.temp_path)}
    probe = subprocess.run([*prefix, "touch", str(where / "probe")], capture_output=True)
    assert probe.returncode != 0, "the directory refuses new files to this user"

    from .libenv import BEET

    result = subprocess.run([*prefix, BEET, "normalize-unmarked"], capture_output=True, text=True, env=beet_env,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert "2 processed, 2 succeeded" in result.stdout
    for track in tracks:
        assert_identity_kept(env, track)
    assert backups(env.temp_path) == []


@needs_root
def test_with_no_place_for_a_backup_the_write_is_done_unprotected_and_says_so(env: LibraryEnv) -> None:
    """The file's directory refuses new files and the spare directory cannot
    be made (a file is in its way): written in place as ``beet write`` would, with a warning."""
    env.configure(unmarked={"feat_format": "featuring"})
    where, tracks = locked_in(env)
    blocker = spare(env)
    blocker.write_text("not a directory")
    with immutable(where):
        result = env.beet("normalize-unmarked", check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "not protected against a kill" in line]
    assert len(warnings) == 2, result.stderr
    assert all(any(str(t.path) in line for line in warnings) for t in tracks)
    for track in tracks:
        assert_identity_kept(env, track)
    assert blocker.read_text() == "not a directory"


# --- after a kill ----------------------------------------------------------------------------


def interrupted_write(env: LibraryEnv, track: Track, new_title: str) -> Path:
    """What a run killed in the middle of a growing write leaves, made
    certain rather than aimed at: its journal entry (written before the
    write), the backup, and the file already written. Returns the backup."""
    item = env.item(track.item_id)
    store = JobStore(store_path(env.lib))
    Journal(store, 1).intend_many([tags_entry(item.id, item.path, {"title": [item.title, new_title]})])
    written = write_fields(item.path, {"title": new_title}, id3v23=False, keep_backup=True)
    assert written.route == "backed up" and written.backup is not None
    return Path(os.fsdecode(written.backup))


def test_a_torn_file_is_put_back_from_its_backup_in_place_by_the_next_run(env: LibraryEnv) -> None:
    """The file cut short in the middle of its audio (where a kill during
    mutagen's move leaves it): the next run's repair puts its bytes back from
    the backup, in place (same inode, both links, xattrs, ACL), then the run
    writes it again."""
    env.configure(unmarked={"feat_format": "featuring"})
    track = identity_track(env, "Torn.flac", env.lib_path / "in")
    backup = interrupted_write(env, track, "Torn.flac featuring Guest")
    os.truncate(track.path, track.path.stat().st_size // 2)

    result = env.beet("normalize-unmarked")

    assert f"item {track.item_id}: a tag write was interrupted; {track.path} was put back" in result.stderr
    assert "1 processed, 1 succeeded" in result.stdout
    assert not backup.exists() and backups(env.temp_path) == []
    assert_identity_kept(env, track)
    assert pending(JobStore(store_path(env.lib))) == []


def test_a_recorded_write_keeps_its_file_and_loses_its_backup(env: LibraryEnv) -> None:
    """Killed after the commit, before the backup was removed: the library
    holds the write, so it was complete; the backup is only removed."""
    env.configure(unmarked={"feat_format": "featuring"})
    track = identity_track(env, "Done.ogg", env.lib_path / "in")
    backup = interrupted_write(env, track, "Done.ogg featuring Guest")
    item = env.item(track.item_id)
    item.title = "Done.ogg featuring Guest"
    item.store()  # the commit
    data = track.path.read_bytes()

    result = env.beet("normalize-unmarked")

    assert "put back" not in result.stderr and not backup.exists()
    assert track.path.read_bytes() == data
    assert_identity_kept(env, track)


def test_a_recorded_write_of_a_moved_file_leaves_no_directory_behind(env: LibraryEnv) -> None:
    """Killed after a commit that recorded the write and a move, before the
    backup went: the backup is removed from the old directory, and the old
    directory, empty then, with it."""
    env.configure(unmarked={"feat_format": "featuring"})
    track = identity_track(env, "Gone.mp3", env.lib_path / "old home")
    backup = interrupted_write(env, track, "Gone.mp3 featuring Guest")
    moved = env.lib_path / "new home" / "Gone.mp3"
    moved.parent.mkdir()
    os.rename(track.path, moved)
    item = env.item(track.item_id)
    item.title, item.path = "Gone.mp3 featuring Guest", os.fsencode(moved)
    item.store()  # the commit

    env.beet("normalize-unmarked")

    assert not backup.exists() and not (env.lib_path / "old home").exists()
    assert title_in_file(moved) == "Gone.mp3 featuring Guest" and moved.stat().st_ino == track.inode


@pytest.mark.fast
def test_a_journal_entry_records_the_spare_directory_and_still_reads_the_old_shape() -> None:
    """Each tag write's entry names the directory its backup goes to when the
    file's own refuses one (any bytes: hex); entries of earlier releases read as before."""
    changes = {"title": ["A ft B", "A featuring B"]}
    spare_dir = b"/home/\xff/.config/beets/library.db-unmarked.backups"
    new = Intent(1, 1, *tags_entry(7, b"/music/a.flac", changes, spare_dir))
    assert (new.tag_changes, new.spare) == (changes, spare_dir)
    plain = Intent(2, 1, *tags_entry(7, b"/music/a.flac", changes))
    assert (plain.tag_changes, plain.spare) == (changes, None)
    oldest = Intent(3, 1, "tags", 7, b"/music/a.flac", b"/music/a.flac")  # before fields were recorded
    assert (oldest.tag_changes, oldest.spare) == (None, None)
