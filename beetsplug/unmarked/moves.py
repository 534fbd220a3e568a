"""A move that is visible only with its commit: place, commit, release.

beets' ``util.move`` renames the file (or copies it across filesystems and
deletes the source), and the library learns the new path afterwards. In
between, the library names a file that is not there: a process killed in
that instant, then a ``beet update``, deletes the item's entry and orphans
its file. A run that moves a whole batch before its commit widens that
window to the batch.

So a run's move is three steps, and the path the library holds exists at
every instant:

1. ``place``: the file is made to exist at the destination too - a hard link
   on the same filesystem (``link``: no data copied, the same inode), or
   across filesystems a copy whose data is flushed to disk before it gets its
   name; the destination's directory is synced before the commit
   (``sync_dirs``), so the name survives a power cut the commit survives;
2. the batch's commit stores the new path;
3. ``release``: the source name is removed, and its directory synced before
   the journal forgets the move (a source name that comes back after a power
   cut would be a second copy nobody knows of).

Killed between 1 and 2, the library still says the source, which is there:
the next run (repair.py) or the run's own undo (undo.py) removes the
destination name. Killed between 2 and 3, the library says the destination,
which is there: the source name is removed then. Either way only a name that
is the same file as the other (same inode, or across filesystems the same
bytes) is ever removed.

A filesystem that has no hard links (FAT, some network and FUSE mounts)
gets beets' ``util.move`` as before: the file is renamed at once, and the
journal settles a kill between the rename and the commit.
"""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import tempfile
from contextlib import suppress
from typing import TYPE_CHECKING, Literal

from beets import util
from beets.util import FilesystemError

from .beets_compat import move_temp_prefix

if TYPE_CHECKING:
    from collections.abc import Iterable

    from beets.library import Library

# Where the file is after ``place``: at both names (the source goes after the
# commit), or at the destination only (moved by beets, no links here).
Placed = Literal["both", "dst"]

# link(2) errors meaning "this filesystem has no hard links", not "it went wrong"
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def place(src: bytes, dst: bytes, adopt: bool = False) -> Placed:
    """Make the file at ``src`` exist at ``dst`` too (see the module
    docstring); ``dst`` must be free, or (a move cut short left it) hold a
    second name of the file, or with ``adopt`` a copy of its bytes. Raises
    beets' ``FilesystemError`` ("file exists") when it is not, having done
    nothing; any other error leaves nothing at ``dst``."""
    source, target = util.syspath(src), util.syspath(dst)
    if os.path.isdir(source):
        raise FilesystemError("source is directory", "move", (src, dst))
    if os.path.lexists(target):
        if second_name(src, dst) or (adopt and same_file(src, dst)):
            return "both"  # a move cut short left it: the same file, already placed
        raise FilesystemError("file exists", "rename", (src, dst))
    if not os.access(os.path.dirname(source) or ".", os.W_OK):  # its old name could never be removed
        raise FilesystemError(PermissionError(errno.EACCES, "Permission denied: its directory is not writable",
                                              os.fsdecode(os.path.dirname(source))), "move", (src, dst))
    try:
        os.link(source, target, follow_symlinks=False)  # a symlinked item: the link moves, as with beets
        return "both"
    except FileExistsError as exc:
        raise FilesystemError("file exists", "rename", (src, dst)) from exc
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            _copy(src, dst)
            return "both"
        if exc.errno not in _NO_LINKS:
            raise FilesystemError(exc, "link", (src, dst)) from exc
    util.move(src, dst)  # no hard links here: beets' own move
    return "dst"


def _copy(src: bytes, dst: bytes) -> None:
    """Across filesystems: a copy under beets' temp name beside ``dst`` (so
    a killed copy is cleaned up like one of ``util.move``'s), its data on
    disk, then its name; no file is ever at ``dst`` half written."""
    directory, name = os.path.split(dst)
    prefix = os.fsdecode(move_temp_prefix() + name) + "."
    if os.path.islink(util.syspath(src)):
        temp = os.fsencode(tempfile.mktemp(suffix=".beets", prefix=prefix, dir=util.syspath(directory)))
        os.symlink(os.readlink(util.syspath(src)), temp)
    else:
        with tempfile.NamedTemporaryFile(suffix=".beets", prefix=prefix, dir=util.syspath(directory),
                                         delete=False) as out:
            temp = os.fsencode(out.name)
            try:
                with open(util.syspath(src), "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            except BaseException:
                with suppress(OSError):
                    os.remove(temp)
                raise
        with suppress(OSError):
            shutil.copystat(util.syspath(src), temp)  # as beets' move: times and mode, where it can
    try:
        os.link(temp, util.syspath(dst), follow_symlinks=False)  # never over a file another program put there
    except OSError as exc:
        with suppress(OSError):
            os.remove(temp)
        if exc.errno == errno.EEXIST:
            raise FilesystemError("file exists", "rename", (src, dst)) from exc
        if exc.errno not in _NO_LINKS:
            raise FilesystemError(exc, "move", (src, dst)) from exc
        _rename_if_free(temp, dst)
        return
    os.remove(temp)


def _rename_if_free(temp: bytes, dst: bytes) -> None:
    """A destination filesystem without hard links: the copy takes its name
    if the name is still free (checked, then renamed: the best it allows)."""
    if os.path.lexists(util.syspath(dst)):
        os.remove(temp)
        raise FilesystemError("file exists", "rename", (temp, dst))
    os.replace(temp, util.syspath(dst))


def second_name(src: bytes, dst: bytes) -> bool:
    """``dst`` is another directory entry (a hard link) of the file at
    ``src`` - what a move cut short between ``place`` and ``release``
    leaves - and not the same entry reached by another spelling (a
    symlinked directory)."""
    source, target = util.syspath(src), util.syspath(dst)
    try:
        if not os.path.samefile(source, target) or os.lstat(source).st_nlink < 2:
            return False
    except OSError:
        return False
    return os.path.realpath(os.path.dirname(source)) != os.path.realpath(os.path.dirname(target)) or \
        os.path.basename(source) != os.path.basename(target)


def same_file(a: bytes, b: bytes) -> bool:
    """``a`` and ``b`` are one file (a link) or byte-identical copies: one of
    them is ours to remove. False if either is missing."""
    try:
        if util.samefile(a, b):
            return os.path.lexists(util.syspath(a))
        return filecmp.cmp(util.syspath(a), util.syspath(b), shallow=False)
    except OSError:
        return False


def release(keep: bytes, drop: bytes) -> bool:
    """Remove the name ``drop`` if it is the same file as ``keep`` (see
    ``same_file``); whether it was removed. A name that holds another file
    (someone put one there since) is left alone."""
    if keep == drop or not same_file(keep, drop):
        return False
    with suppress(FileNotFoundError):
        os.remove(util.syspath(drop))
    return True


def library_durable(lib: Library) -> None:
    """The library's last commit survives a power cut from now on. beets'
    library uses SQLite's rollback journal with ``synchronous=FULL``: a
    commit ends with the journal file's deletion, which SQLite does not
    sync, so after a power cut the journal can come back and roll the commit
    back - while the job store's later commits (the journal forgetting what
    the commit records) survive. Syncing the directory that holds the
    library makes the deletion durable (what ``synchronous=EXTRA`` would)."""
    sync_dirs([os.fsencode(os.path.dirname(os.path.abspath(lib.path)))])


def sync_dirs(directories: Iterable[bytes]) -> None:
    """Put these directories' entries on disk (fsync of each directory): a
    name made or removed in them survives a power cut from now on."""
    for directory in sorted(set(directories)):
        try:
            fd = os.open(util.syspath(directory), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # pruned, or never made
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EROFS):  # a filesystem that cannot sync directories
                raise
        finally:
            os.close(fd)


class Leftovers:
    """Hidden partial copies a killed cross-device copy left (beets' temp
    names, ``.<name>.<8 random>.beets``), found without the journal: a job
    store moved aside has lost the entries that name them. Each destination
    directory is listed once per run; a leftover is removed when a file is
    placed at the name it was a copy for."""

    def __init__(self) -> None:
        self._by_dir: dict[bytes, list[bytes]] = {}

    def clear(self, dest: bytes) -> None:
        directory, name = os.path.split(dest)
        found = self._by_dir.get(directory)
        if found is None:
            found = self._by_dir[directory] = _temp_copies(directory)
        if not found:
            return
        prefix = move_temp_prefix() + name + b"."
        for temp in [t for t in found if t.startswith(prefix) and len(t) == len(prefix) + _RANDOM + len(_SUFFIX)]:
            found.remove(temp)
            with suppress(FileNotFoundError):
                os.remove(os.path.join(directory, temp))


_RANDOM, _SUFFIX = 8, b".beets"  # tempfile's random part, and the suffix beets (and ``_copy``) give


def _temp_copies(directory: bytes) -> list[bytes]:
    try:
        names = os.listdir(directory)  # (bytes in, bytes out)
    except OSError:
        return []
    prefix = move_temp_prefix()
    return [name for name in names if name.startswith(prefix) and name.endswith(_SUFFIX)]

