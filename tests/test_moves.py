"""moves.py on real files: place, release, and the fallback without hard links."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from beets.util import FilesystemError

from beetsplug.unmarked import moves

from .libenv import read_only


def track(path: Path, data: bytes = b"RIFF0000 not really audio, only bytes to keep") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return os.fsencode(path)


@pytest.mark.fast
def test_on_one_filesystem_the_destination_is_a_second_name(tmp_path: Path) -> None:
    src, dst = track(tmp_path / "a" / "x.mp3"), os.fsencode(tmp_path / "b" / "y.mp3")
    os.makedirs(os.path.dirname(dst))
    assert moves.place(src, dst) == "both"
    assert os.stat(src).st_ino == os.stat(dst).st_ino and os.stat(dst).st_nlink == 2
    assert moves.second_name(src, dst)
    assert moves.release(dst, src) and not os.path.exists(src) and os.path.exists(dst)


@pytest.mark.fast
def test_a_taken_destination_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    src, dst = track(tmp_path / "x.mp3"), track(tmp_path / "y.mp3", b"someone else's")
    with pytest.raises(FilesystemError, match="file exists"):
        moves.place(src, dst)
    assert Path(os.fsdecode(dst)).read_bytes() == b"someone else's" and os.path.exists(src)
    assert not moves.release(src, dst), "a different file is never removed"


@pytest.mark.fast
def test_across_filesystems_a_whole_copy_then_the_name(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp dir")
    data = os.urandom(3 << 20)
    src = track(tmp_path / "x.flac", data)
    target = shm / f"unmarked-test-{os.getpid()}"
    target.mkdir()
    try:
        dst = os.fsencode(target / "y.flac")
        assert moves.place(src, dst) == "both"
        assert Path(os.fsdecode(dst)).read_bytes() == data and os.path.exists(src)
        assert sorted(os.listdir(target)) == ["y.flac"], "no temp copy left"
        assert moves.same_file(src, dst) and not moves.second_name(src, dst)
        assert moves.release(dst, src) and not os.path.exists(src)
    finally:
        for leftover in target.iterdir():
            leftover.unlink()
        target.rmdir()


@pytest.mark.fast
def test_without_hard_links_beets_move_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that refuses link(2) (FAT answers EPERM): renamed at once."""
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    src, dst = track(tmp_path / "x.mp3"), os.fsencode(tmp_path / "y.mp3")
    assert moves.place(src, dst) == "dst"
    assert not os.path.exists(src) and os.path.exists(dst)


@pytest.mark.fast
def test_leftover_partial_copies_go_when_their_name_is_placed(tmp_path: Path) -> None:
    keep = track(tmp_path / ".other.mp3.abcd1234.beets")
    gone = track(tmp_path / ".y.mp3.k2j4h5g6.beets")
    leftovers = moves.Leftovers()
    leftovers.clear(os.fsencode(tmp_path / "y.mp3"))
    assert not os.path.exists(gone) and os.path.exists(keep)


def test_a_file_whose_directory_is_read_only_is_not_placed(tmp_path: Path) -> None:
    """Its old name could never be removed after the commit: refused up front,
    as beets' rename would be, and nothing is left at the destination."""
    src, dst = track(tmp_path / "locked" / "x.mp3"), os.fsencode(tmp_path / "y.mp3")
    with read_only(tmp_path / "locked"):
        with pytest.raises(FilesystemError, match="not writable"):
            moves.place(src, dst)
    assert os.path.exists(src) and not os.path.exists(dst)
