"""The power-cut file system (tests/powercut.py) keeps exactly what was made durable.

Each case runs a small program on the mounted file system, cuts the power
right after its last step (the fsync of a marker file, counted by the file
system), and reads the backing directory: the state a disk would hold.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .powercut import Mount

# Every program ends here: the cut comes right after this fsync (the marker
# itself is lost: its directory is never fsync'd).
MARKER = """
fd = os.open("marker", os.O_CREAT | os.O_WRONLY)
os.fsync(fd)
open("after-the-cut", "w").close()  # never runs
"""

HELPERS = """
import os, sqlite3, sys
os.chdir(sys.argv[1])
def put(name, data, sync=False):
    fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
    os.write(fd, data)
    if sync:
        os.fsync(fd)
    os.close(fd)
def sync_dir(name="."):
    fd = os.open(name, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""


def cut_after(tmp_path: Path, program: str, before: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """Run ``program`` on the file system over a backing directory holding
    ``before``, cut the power after it; the backing directory's files then."""
    backing = tmp_path / "backing"
    for name, data in (before or {}).items():
        (backing / name).parent.mkdir(parents=True, exist_ok=True)
        (backing / name).write_bytes(data)
    with Mount(backing, tmp_path / "mnt", cut=("fsync", 1, "/marker")) as mount:
        victim = subprocess.Popen([sys.executable, "-c", HELPERS + program + MARKER, str(mount.mountpoint)])
        assert mount.wait_cut(victim), f"the program ended (exit {victim.returncode}) before the cut"
        mount.finish_cut(victim)
    assert victim.returncode == -9
    return {str(p.relative_to(backing)): p.read_bytes() for p in sorted(backing.rglob("*")) if p.is_file()}


def test_a_clean_unmount_keeps_everything(tmp_path):
    backing = tmp_path / "backing"
    with Mount(backing, tmp_path / "mnt") as mount:
        (mount.mountpoint / "d").mkdir()
        (mount.mountpoint / "d" / "f").write_bytes(b"never synced")
    assert (backing / "d" / "f").read_bytes() == b"never synced"
    assert mount.counts()["create"] == 1 and mount.counts()["fsync"] == 0


def test_an_unsynced_write_is_lost(tmp_path):
    assert cut_after(tmp_path, 'put("f", b"new")', {"f": b"old"}) == {"f": b"old"}


def test_a_synced_write_is_kept(tmp_path):
    assert cut_after(tmp_path, 'put("f", b"new", sync=True)', {"f": b"old"}) == {"f": b"new"}


def test_a_write_after_the_last_fsync_is_lost(tmp_path):
    program = 'put("f", b"first", sync=True)\nput("f", b"second")'
    assert cut_after(tmp_path, program, {"f": b"old"}) == {"f": b"first"}


def test_a_rename_without_a_directory_fsync_is_lost(tmp_path):
    assert cut_after(tmp_path, 'os.rename("a", "b")', {"a": b"data"}) == {"a": b"data"}


def test_a_rename_with_a_directory_fsync_is_kept(tmp_path):
    assert cut_after(tmp_path, 'os.rename("a", "b")\nsync_dir()', {"a": b"data"}) == {"b": b"data"}


def test_a_rename_over_a_file_keeps_the_old_one_until_the_directory_fsync(tmp_path):
    before = {"a": b"new", "b": b"old"}
    assert cut_after(tmp_path, 'os.rename("a", "b")', before) == before
    assert cut_after(tmp_path / "2", 'os.rename("a", "b")\nsync_dir()', before) == {"b": b"new"}


def test_a_move_between_directories_needs_both_fsyncs(tmp_path):
    # only the destination's directory synced: the file is in both (hard links)
    program = 'os.rename("x/f", "y/f")\nsync_dir("y")'
    assert cut_after(tmp_path, program, {"x/f": b"data", "y/keep": b""}) == {"x/f": b"data", "y/f": b"data",
                                                                             "y/keep": b""}
    assert os.stat(tmp_path / "backing" / "x" / "f").st_ino == os.stat(tmp_path / "backing" / "y" / "f").st_ino
    program += '\nsync_dir("x")'
    assert cut_after(tmp_path / "2", program, {"x/f": b"data", "y/keep": b""}) == {"y/f": b"data", "y/keep": b""}


def test_a_create_without_a_directory_fsync_is_lost(tmp_path):
    assert cut_after(tmp_path, 'put("new", b"data")') == {}


def test_a_created_file_fsyncd_in_a_directory_never_fsyncd_is_lost(tmp_path):
    assert cut_after(tmp_path, 'put("new", b"data", sync=True)') == {}


def test_a_create_with_a_directory_fsync_is_kept_with_its_synced_data_only(tmp_path):
    assert cut_after(tmp_path, 'put("new", b"data")\nsync_dir()') == {"new": b""}
    assert cut_after(tmp_path / "2", 'put("new", b"data", sync=True)\nsync_dir()') == {"new": b"data"}


def test_an_unlink_needs_a_directory_fsync(tmp_path):
    assert cut_after(tmp_path, 'os.unlink("f")', {"f": b"data"}) == {"f": b"data"}
    assert cut_after(tmp_path / "2", 'os.unlink("f")\nsync_dir()', {"f": b"data"}) == {}


def test_a_link_needs_a_directory_fsync(tmp_path):
    assert cut_after(tmp_path, 'os.link("f", "g")', {"f": b"data"}) == {"f": b"data"}
    assert cut_after(tmp_path / "2", 'os.link("f", "g")\nsync_dir()', {"f": b"data"}) == {"f": b"data",
                                                                                           "g": b"data"}


def test_a_new_directory_needs_its_parents_fsync_and_its_own(tmp_path):
    made = 'os.mkdir("d")\nput("d/f", b"data", sync=True)\n'
    assert cut_after(tmp_path, made + 'sync_dir("d")') == {}
    assert cut_after(tmp_path / "2", made + "sync_dir()") == {}
    assert (tmp_path / "2" / "backing" / "d").is_dir()
    assert cut_after(tmp_path / "3", made + 'sync_dir("d")\nsync_dir()') == {"d/f": b"data"}


def test_a_directory_rename_moves_its_contents_with_it_once_synced(tmp_path):
    before = {"d/f": b"data"}
    assert cut_after(tmp_path, 'os.rename("d", "e")', before) == before
    assert cut_after(tmp_path / "2", 'os.rename("d", "e")\nsync_dir()', before) == {"e/f": b"data"}


def test_an_rmdir_needs_its_parents_fsync(tmp_path):
    program = 'os.unlink("d/f")\nsync_dir("d")\nos.rmdir("d")'
    assert cut_after(tmp_path, program, {"d/f": b"data"}) == {}
    assert (tmp_path / "backing" / "d").is_dir()
    assert cut_after(tmp_path / "2", program + "\nsync_dir()", {"d/f": b"data"}) == {}
    assert not (tmp_path / "2" / "backing" / "d").exists()


def test_an_unlinked_file_that_is_still_open_is_written_and_synced(tmp_path):
    # the inode keeps its own identity: a new file may not take over its durable state
    program = 'fd = os.open("f", os.O_RDWR)\nos.unlink("f")\nput("g", b"other", sync=True)\nsync_dir()\n'
    program += 'os.pwrite(fd, b"NEW", 0)\nos.fsync(fd)'
    assert cut_after(tmp_path, program, {"f": b"old"}) == {"g": b"other"}


def test_sqlite_in_wal_mode_keeps_a_full_commit(tmp_path):
    program = """
db = sqlite3.connect("x.db", isolation_level=None)
assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (n)")
db.execute("INSERT INTO t VALUES (1)")
sync_dir()
db.execute("INSERT INTO t VALUES (2)")
"""
    cut_after(tmp_path, program)
    backing = tmp_path / "backing"
    db = sqlite3.connect(backing / "x.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [n for (n,) in db.execute("SELECT n FROM t")] == [1, 2]
    db.close()


@pytest.mark.parametrize("cut_at", [1, 2, 3])
def test_the_cut_stops_the_program_at_the_nth_request(tmp_path, cut_at):
    backing = tmp_path / "backing"
    program = "for n in range(5):\n    put(str(n), b'x', sync=True)\n    sync_dir()\n"
    with Mount(backing, tmp_path / "mnt", cut=("fsyncdir", cut_at, "*")) as mount:
        victim = subprocess.Popen([sys.executable, "-c", HELPERS + program, str(mount.mountpoint)])
        assert mount.wait_cut(victim)
        mount.finish_cut(victim)
    assert sorted(os.listdir(backing)) == [str(n) for n in range(cut_at)]
    assert mount.counts()["fsyncdir"] == cut_at
    assert mount.cut_at == "fsyncdir /"


def test_a_failing_test_still_unmounts_and_keeps_the_backing_directory(tmp_path):
    mount = Mount(tmp_path / "backing", tmp_path / "mnt")
    with pytest.raises(RuntimeError, match="the test failed"), mount:
        (mount.mountpoint / "f").write_bytes(b"data")
        raise RuntimeError("the test failed")
    assert not mount.mounted()
    assert (tmp_path / "backing" / "f").read_bytes() == b"data"


def test_a_cut_left_no_mount_behind(tmp_path):
    cut_after(tmp_path, 'put("f", b"x")')
    assert not Mount(tmp_path / "backing", tmp_path / "mnt").mounted()


@pytest.mark.parametrize(("synchronous", "kept"), [("FULL", [1]), ("EXTRA", [1, 2])])
def test_a_rollback_journal_commit_needs_synchronous_extra(tmp_path, synchronous, kept):
    """SQLite's DELETE mode commits by unlinking the journal; only EXTRA fsyncs
    the directory after that, so under FULL a cut right after the commit
    brings the journal back and the commit is rolled back (beets' library)."""
    program = f"""
db = sqlite3.connect("x.db", isolation_level=None)
db.execute("PRAGMA synchronous={synchronous}")
db.execute("CREATE TABLE t (n)")
db.execute("INSERT INTO t VALUES (1)")
db.execute("INSERT INTO t VALUES (2)")
"""
    files = cut_after(tmp_path, program)
    assert ("x.db-journal" in files) == (synchronous == "FULL")
    db = sqlite3.connect(tmp_path / "backing" / "x.db")
    assert [n for (n,) in db.execute("SELECT n FROM t")] == kept
    db.close()
