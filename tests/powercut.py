"""A file system that loses, on a power cut, whatever was not made durable.

Test-only: a FUSE file system (mfusepy, on Debian's libfuse3) that passes
through to a *backing directory* and simulates what a disk keeps when the
power goes. The idea of checking a program's recovery against the states a
crash can leave is ALICE's ("All File Systems Are Not Created Equal",
Pillai et al., OSDI 2014); this is a small, pessimistic version of it.

What it models (POSIX's promises, nothing more):

- a file's data (its bytes and size) is durable once the file is fsync'd or
  fdatasync'd; until then a cut keeps the data of its previous fsync (empty
  for a file never fsync'd);
- a directory entry (create, mknod, mkdir, symlink, link, unlink, rmdir, and
  both ends of a rename) is durable once its directory is fsync'd (FUSE's
  fsyncdir): the directory's whole listing at that moment becomes durable;
- so a file created and fsync'd in a directory never fsync'd is lost; a file
  renamed from one directory to another, with only the destination fsync'd,
  is in both after a cut; a new directory's contents need its own fsync and
  its name its parent's.

What it does not model: metadata (mode is the one seen at the directory's
fsync, times are those of the cut), torn or reordered writes inside one
fsync interval (a cut keeps exactly the last fsync'd data, never a prefix or
a mix), file systems that are kinder than POSIX (ext4's rename-over-replace
heuristics), xattrs, and several crash states per cut: ALICE explores every
state a crash may leave; this keeps one, the most pessimistic.

How: during a mount every operation goes to a *live* copy of the backing
directory (so reads see every write at once, mmap and SQLite's locks work as
on any FUSE file system), and the durable state is kept aside: for each
inode, a copy of its content as at its last fsync; for each directory, its
listing as at its last fsync. Unlinked inodes are parked, not freed, so an
inode number means one file for the whole mount. The backing directory is
only written when the file system stops: on a clean unmount it becomes the
live tree (everything was flushed), on a cut it becomes the durable state,
and nothing else.

SQLite works on it, in WAL mode too: the ``-shm`` file is mmap'd shared (FUSE
allows it unless direct_io), and locks are the kernel's own (the file system
implements no lock operation, so the kernel keeps POSIX locks locally).
Writes are not cached by the kernel (no writeback cache): each write() is a
request here at once, and an fsync first sends the dirty mmap'd pages. One
consequence of the model worth knowing: a rollback-journal commit (beets'
library) is durable only once the directory is fsync'd after the journal's
unlink, which SQLite does not do; the next commit's journal creation does
(SQLite fsyncs the directory then), so a run's last commit may be undone by
a cut, as POSIX allows.

Counting and the cut: the file system counts the requests it serves by kind
(``KINDS``; a large write() may arrive as several requests of up to 128 KiB).
Mounted with ``cut=(kind, n, pattern)``, it serves the n-th request of that
kind (or of those kinds: "rename,link") whose path matches the fnmatch
``pattern`` (durably, if it is a sync), then holds that request unanswered: the caller is frozen inside its system
call, as at a power cut. It says so on a pipe (``Mount.wait_cut``); the test
SIGKILLs the process under test, then lets the file system go
(``Mount.finish_cut``): every request from then on fails with EIO, the
backing directory becomes the durable state, and the file system unmounts.
``Mount.cut_now`` cuts at once (e.g. just after a program returned).
The killed process never runs another instruction (a SIGKILL pending on
return from a system call). Then mount again and run the recovery.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import select
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

CUT_NOW = "/.power-cut-now"  # a mkdir of this name is the test's own cut, not a request
KINDS = ("create", "mkdir", "symlink", "link", "unlink", "rmdir", "rename", "write", "truncate",
         "fsync", "fsyncdir")


class Entry(NamedTuple):
    """A directory entry as the durable state keeps it."""

    ino: int
    mode: int
    target: str = ""  # a symlink's


@dataclass
class Durable:
    """What a cut keeps: per directory inode its listing, per file inode the
    path of a file with its content (none: empty)."""

    root: int
    dirs: dict[int, dict[str, Entry]] = field(default_factory=dict)
    content: dict[int, str] = field(default_factory=dict)

    def materialize(self, into: Path) -> None:
        """Write the durable tree into the empty directory ``into``; inodes
        with several names become hard links."""
        made: dict[int, str] = {}
        self._fill(self.root, into, made, {self.root})

    def _fill(self, dir_ino: int, into: Path, made: dict[int, str], seen: set[int]) -> None:
        for name, entry in self.dirs.get(dir_ino, {}).items():
            path = into / name
            if stat.S_ISDIR(entry.mode):
                if entry.ino in seen:  # a directory renamed into itself by a stale listing
                    continue
                path.mkdir()
                self._fill(entry.ino, path, made, seen | {entry.ino})
            elif stat.S_ISLNK(entry.mode):
                os.symlink(entry.target, path)
                continue
            elif entry.ino in made:
                os.link(made[entry.ino], path)
            elif entry.ino in self.content:
                shutil.copyfile(self.content[entry.ino], path)
                made[entry.ino] = str(path)
            else:
                path.touch()
                made[entry.ino] = str(path)
            os.chmod(path, stat.S_IMODE(entry.mode))


def listing(path: str) -> dict[str, Entry]:
    """A directory's entries as they are now."""
    found = {}
    for entry in os.scandir(path):
        st = entry.stat(follow_symlinks=False)
        target = os.readlink(entry.path) if stat.S_ISLNK(st.st_mode) else ""
        found[entry.name] = Entry(st.st_ino, st.st_mode, target)
    return found


# --- the file system process --------------------------------------------------------------


def serve(backing: str, mountpoint: str, cut: list[Any] | None, reached_fd: int, go_fd: int, ready_fd: int) -> None:
    """Mount, serve until unmounted or cut, then write the backing directory."""
    import mfusepy  # the test process need not load libfuse

    os.umask(0)
    work = Path(backing).parent / f".{Path(backing).name}.powercut"
    shutil.rmtree(work, ignore_errors=True)
    live, parked, store = work / "live", work / "parked", work / "store"
    parked.mkdir(parents=True)
    store.mkdir()
    subprocess.run(["cp", "-a", backing, str(live)], check=True)
    durable = initial_state(Path(backing), live)
    ops = PowerCutFS(mfusepy, live, parked, store, durable, cut, reached_fd, go_fd, ready_fd)
    try:
        mfusepy.FUSE(ops, mountpoint, foreground=True, nothreads=True, hard_remove=True, fsname="powercut")
    except RuntimeError:  # libfuse's own unmount fails after a lazy one: already gone
        pass
    # Unmounted: write what the disk holds now.
    new = work / "new"
    if ops.was_cut:
        new.mkdir()
        durable.materialize(new)
    else:
        live.rename(new)
    (work / "counts.json").write_text(json.dumps({**ops.counts, "matched": ops.matched}))
    shutil.rmtree(backing)
    new.rename(backing)
    shutil.move(str(work / "counts.json"), str(Path(backing).parent / f".{Path(backing).name}.counts.json"))
    shutil.rmtree(work)


def initial_state(backing: Path, live: Path) -> Durable:
    """At mount, all of the backing directory is durable: each live inode's
    content is its twin's in the backing directory."""
    durable = Durable(root=live.stat().st_ino)
    for dirpath, _dirs, files in os.walk(live):
        rel = Path(dirpath).relative_to(live)
        durable.dirs[Path(dirpath).stat().st_ino] = listing(dirpath)
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                durable.content.setdefault(st.st_ino, str(backing / rel / name))
    return durable


class PowerCutFS:
    """The FUSE operations: passthrough to ``live``, durable state on the side."""

    use_ns = True

    def __init__(self, fuse: Any, live: Path, parked: Path, store: Path, durable: Durable, cut: list[Any] | None,
                 reached_fd: int, go_fd: int, ready_fd: int) -> None:
        self.fuse, self.live, self.parked, self.store, self.durable = fuse, str(live), parked, store, durable
        self.cut = cut
        self.reached_fd, self.go_fd, self.ready_fd = reached_fd, go_fd, ready_fd
        self.counts: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.matched = 0
        self.was_cut = False
        self.serial = 0

    # --- bookkeeping

    def _real(self, path: str) -> str:
        return self.live + path

    def _count(self, kind: str, path: str | None) -> None:
        """Before a request: refuse it after a cut; count it."""
        if self.was_cut:
            raise self.fuse.FuseOSError(errno.EIO)
        self.counts[kind] += 1

    def _after(self, kind: str, path: str | None) -> None:
        """After a request took effect: is this the cut?"""
        if self.cut is None or kind not in self.cut[0].split(",") or not fnmatch.fnmatch(path or "", self.cut[2]):
            return
        self.matched += 1
        if self.matched < self.cut[1]:
            return
        self.was_cut = True
        os.write(self.reached_fd, f"{kind} {path}\n".encode())
        os.read(self.go_fd, 1)  # until the test has killed the process under test
        self.fuse.fuse_exit()
        raise self.fuse.FuseOSError(errno.EIO)

    def _park(self, real: str) -> None:
        """Keep an inode that loses a name alive (its number must not be reused)."""
        self.serial += 1
        os.link(real, self.parked / str(self.serial))

    def _do(self, kind: str, path: str | None, action: Callable[[], Any]) -> Any:
        self._count(kind, path)
        result = action()
        self._after(kind, path)
        return result

    # --- the model

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        def sync() -> None:
            ino = os.fstat(fh).st_ino
            self.serial += 1
            copy = self.store / f"{ino}.{self.serial}"
            # (the caller's descriptor may be write-only; a reopen also reaches an unlinked file)
            with open(f"/proc/self/fd/{fh}", "rb") as data, open(copy, "wb") as out:
                shutil.copyfileobj(data, out, 1 << 20)
            old = self.durable.content.get(ino)
            self.durable.content[ino] = str(copy)
            if old and old.startswith(str(self.store)):
                os.unlink(old)
        self._do("fsync", path, sync)
        return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        real = self._real(path)
        self._do("fsyncdir", path, lambda: self.durable.dirs.__setitem__(os.stat(real).st_ino, listing(real)))
        return 0

    # --- the namespace: passthrough; what loses a name is parked

    def create(self, path: str, mode: int, flags: int = os.O_RDWR) -> int:
        return int(self._do("create", path, lambda: os.open(self._real(path), flags | os.O_CREAT, mode)))

    def mknod(self, path: str, mode: int, dev: int) -> int:
        self._do("create", path, lambda: os.mknod(self._real(path), mode, dev))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        if path == CUT_NOW:  # the test cuts the power itself (Mount.cut_now)
            self.was_cut = True
            self.fuse.fuse_exit()
            raise self.fuse.FuseOSError(errno.EIO)
        self._do("mkdir", path, lambda: os.mkdir(self._real(path), mode))
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._do("symlink", target, lambda: os.symlink(source, self._real(target)))
        return 0

    def link(self, target: str, source: str) -> int:
        self._do("link", target, lambda: os.link(self._real(source), self._real(target)))
        return 0

    def unlink(self, path: str) -> int:
        real = self._real(path)

        def unlink() -> None:
            self._park(real)
            os.unlink(real)
        self._do("unlink", path, unlink)
        return 0

    def rmdir(self, path: str) -> int:
        real = self._real(path)

        def rmdir() -> None:
            if os.listdir(real):
                raise self.fuse.FuseOSError(errno.ENOTEMPTY)
            self.serial += 1
            os.rename(real, self.parked / str(self.serial))
        self._do("rmdir", path, rmdir)
        return 0

    def rename(self, old: str, new: str) -> int:
        src, dst = self._real(old), self._real(new)

        def rename() -> None:
            if os.path.lexists(dst) and not os.path.isdir(dst):
                self._park(dst)
            elif os.path.isdir(dst) and not os.path.islink(dst):
                if not os.path.isdir(src):
                    raise self.fuse.FuseOSError(errno.EISDIR)
                if os.listdir(dst):
                    raise self.fuse.FuseOSError(errno.ENOTEMPTY)
                if os.stat(src).st_ino != os.stat(dst).st_ino:
                    self.serial += 1
                    os.rename(dst, self.parked / str(self.serial))
            os.rename(src, dst)
        self._do("rename", new, rename)
        return 0

    # --- data

    def open(self, path: str, flags: int) -> int:
        return os.open(self._real(path), flags)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        return int(self._do("write", path, lambda: os.pwrite(fh, data, offset)))

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        if fh is not None:
            self._do("truncate", path, lambda: os.ftruncate(fh, length))
        else:
            self._do("truncate", path, lambda: os.truncate(self._real(path or ""), length))
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() makes nothing durable

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    # --- metadata: passthrough, not modelled

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None else os.lstat(self._real(path or ""))
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino")
        attrs = {key: getattr(st, key) for key in keys}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise self.fuse.FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                "f_frsize", "f_namemax")
        return {key: getattr(st, key) for key in keys}

    def init(self, path: str) -> None:
        os.write(self.ready_fd, b"ready\n")


# --- the test side ----------------------------------------------------------------------------


class Mount:
    """The power-cut file system mounted at ``mountpoint`` over ``backing``,
    served by a child process. Use as a context manager: the exit unmounts
    (``fusermount3 -u``), also on failure, and waits for the backing
    directory to be written."""

    def __init__(self, backing: Path, mountpoint: Path, cut: tuple[str, int, str] | None = None) -> None:
        assert cut is None or set(cut[0].split(",")) <= set(KINDS), cut
        self.backing, self.mountpoint, self.cut = backing, mountpoint, cut
        self.proc: subprocess.Popen[bytes] | None = None
        self.cut_at = ""  # the request the cut came after

    def __enter__(self) -> Mount:
        assert os.path.exists("/dev/fuse"), "/dev/fuse is missing: the power-cut tests need FUSE (run as root)"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        reached_r, self._reached_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        self._reached_r = reached_r
        args = json.dumps([str(self.backing), str(self.mountpoint), self.cut, self._reached_w, self._go_r, ready_w])
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.powercut", args],
                                     pass_fds=(self._reached_w, self._go_r, ready_w),
                                     cwd=Path(__file__).parent.parent)
        os.close(ready_w)
        os.close(self._reached_w)
        os.close(self._go_r)
        ready = os.read(ready_r, 16)  # empty: the file system died before mounting
        os.close(ready_r)
        if not ready or not self.mounted():
            self._stop()
            raise AssertionError(f"the power-cut file system did not mount (exit {self.proc.returncode})")
        return self

    def wait_cut(self, victim: subprocess.Popen[Any]) -> bool:
        """Until the cut point is reached (True) or ``victim`` ends first (False)."""
        while True:
            ready, _, _ = select.select([self._reached_r], [], [], 0.05)
            if ready:
                self.cut_at = os.read(self._reached_r, 4096).decode().strip()
                return True
            if victim.poll() is not None:
                return False

    def finish_cut(self, victim: subprocess.Popen[Any]) -> None:
        """SIGKILL ``victim`` (frozen at the cut), then let the file system
        drop what was not durable and unmount."""
        victim.kill()
        os.write(self._go_w, b"!")
        victim.wait()
        self._stop()

    def cut_now(self) -> None:
        """Cut the power now (no process may be left working on the mount)."""
        try:
            os.mkdir(self.mountpoint / CUT_NOW[1:])
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
        else:
            raise AssertionError("the file system took the cut for a mkdir")
        self._stop()

    def counts(self) -> dict[str, int]:
        """Requests served per kind in the last mount (after it ended); ``matched``:
        those that counted towards the cut."""
        counted = self.backing.parent / f".{self.backing.name}.counts.json"
        return dict(json.loads(counted.read_text()))

    def _stop(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None and self.mounted():
            # Lazy: the kernel may still hold a file the test closed (FUSE
            # releases asynchronously); the file system ends once it is let go.
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # something still holds a file open on the mount
            self.proc.kill()
            self.proc.wait()
        if self.mounted():  # a file system that died (or was killed) leaves its mount behind
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False)
        for fd in (self._reached_r, self._go_w):
            try:
                os.close(fd)
            except OSError:
                pass
        assert self.proc.returncode == 0, f"the power-cut file system exited {self.proc.returncode}"

    def mounted(self) -> bool:
        """Whether the kernel lists a mount here (``os.path.ismount`` cannot
        stat a mount whose file system died)."""
        with open("/proc/self/mounts") as mounts:
            return any(line.split()[1] == str(self.mountpoint) for line in mounts)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self._stop()


if __name__ == "__main__":
    backing_dir, mount_dir, cut_spec, reached, go, ready_pipe = json.loads(sys.argv[1])
    serve(backing_dir, mount_dir, cut_spec, reached, go, ready_pipe)
