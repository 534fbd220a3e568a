"""Who owns a library: exclusive file locks the kernel vouches for.

A job runs only while its process holds an exclusive ``flock`` on
``<library>-unmarked.lock``. The kernel releases it when the process ends,
however it ends (kill -9, OOM killer, crash), and never while the process
lives: a stopped (SIGSTOP), slow or swapped-out process still holds it, and a
process in another PID namespace or container that sees the same file sees
the same lock. So "is the job alive?" has an exact answer: the lock is held.
No pids, host names or clocks are consulted.

``flock`` (not ``fcntl``/``lockf``) because its locks belong to an open file
description: two threads of one server that open the file separately exclude
each other, where POSIX record locks would let one process take its own lock
twice. On network filesystems whose lock support is missing or emulated,
none of this can be vouched for (see the README).
"""

from __future__ import annotations

import fcntl
import os
import time
import weakref
from typing import TYPE_CHECKING

from .errors import ClaimLost

if TYPE_CHECKING:
    from collections.abc import Callable


def _open(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def file_identity(path: str | bytes) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, or None if there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class LibraryLock:
    """This process's exclusive hold on one library's job slot."""

    def __init__(self, path: str, fd: int, store_path: str, store_identity: tuple[int, int] | None) -> None:
        self.path, self._fd = path, fd
        self.store_path, self.store_identity = store_path, store_identity
        _held.add(self)

    @classmethod
    def take(cls, path: str, store_path: str, store_identity: tuple[int, int] | None,
             patience: float = 1.0) -> LibraryLock | None:
        """The lock, or None if another process holds it past ``patience`` seconds.

        The short patience covers readers that take the lock for an instant
        to end a dead job's record (see ``JobStore.reap``).
        """
        deadline = time.monotonic() + patience
        while True:
            fd = _open(path)
            if _try_lock(fd, fcntl.LOCK_EX):
                if _same(fd, path):
                    return cls(path, fd, store_path, store_identity)
                os.close(fd)  # the file was replaced while we locked it: lock the new one
                continue
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def check(self) -> None:
        """Raise ClaimLost unless the lock file and the job store this job
        started with are still the ones at their paths (fencing: called
        before every file operation and every commit)."""
        if not _same(self._fd, self.path):
            raise ClaimLost(f"the lock file {self.path} was deleted or replaced during the run; "
                            "another process may own the library now, so this run stopped")
        if file_identity(self.store_path) != self.store_identity:
            raise ClaimLost(f"the job store {self.store_path} was deleted or replaced during the run; "
                            "its journal is gone, so this run stopped")

    def share(self) -> int:
        """A duplicate of the lock's descriptor, for a helper process this one
        is about to fork (the engine's, see helper.py). The kernel frees a
        flock only when every descriptor of it is closed, so the library stays
        claimed while the helper lives, even if this process dies first: no
        other job can start while a helper may still touch a file. The caller
        closes its own copy once the helper runs; ``_drop_inherited_locks``
        leaves this one alone."""
        return os.dup(self._fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0


def _same(fd: int, path: str) -> bool:
    st = os.fstat(fd)
    return file_identity(path) == (st.st_dev, st.st_ino)


def wait_for(take: Callable[[], LibraryLock | None], poll: float = 0.2) -> LibraryLock:
    """Poll ``take`` until it succeeds (Ctrl-C interrupts the wait)."""
    while True:
        lock = take()
        if lock is not None:
            return lock
        time.sleep(poll)


_held: weakref.WeakSet[LibraryLock] = weakref.WeakSet()


def _drop_inherited_locks() -> None:
    """A forked child shares its parent's lock (one open file description) but
    not the parent's running job: close the child's copies, or the lock would
    outlive the job's process for as long as the child lives."""
    for lock in list(_held):
        lock.release()


os.register_at_fork(after_in_child=_drop_inherited_locks)
