"""A helper process: the second core's share of a run.

The engine forks one helper at the start of a real run (Linux, enough items,
a process with no other thread (``available``), and no plugin that listens
to the events of the work handed over: ``write``, ``after_write``,
``before_item_moved``, ``item_moved``). It answers requests in the order
they are sent:

* ``files``: for each item, write the changed tags (``files.write_fields``,
  untearable) and then move the file (beets' ``util.move``), as the engine
  would; the report says what happened to each (written? where is the file?)
  so the engine can finish, fail or undo the item;
* ``destinations``: ``Item.destination()`` of items given as stored rows
  and the fields the rules changed, in order. The parent takes items from the
  end of the list for itself when it needs the answer before the helper got
  there (``Helper.steal``): two counters per request in memory both
  processes share - how many items the helper has begun, how many it may
  do - and an item is the parent's once the limit drops below it. Each side
  writes one counter and reads the other: at worst both compute the same
  item (the parent's answer is used), never neither; no lock that a killed
  process could leave held.

Why this keeps the guarantees of a one-process run:

* the work is journaled before it is handed out: every tag write and move
  has its intent in the journal (one transaction per wave) before the helper
  hears of it, so a crash of either process is repaired like any other;
* the helper holds the library's lock too (a duplicate of the lock's
  descriptor, ``LibraryLock.share``): the kernel frees the lock only when both
  processes are gone, so no other job can start while the helper could still
  touch a file; and the kernel kills the helper when its parent dies
  (``PR_SET_PDEATHSIG``), so that is at once;
* fencing: before each file it checks the claim exactly as the engine's guard
  does (lock file and job store still the ones the job started with), and
  stops at the first failure, reporting the rest as not done;
* a stop request (the run aborts: Ctrl-C, library locked, claim lost) is
  honoured between items; the engine waits for the reports of everything it
  handed out, so its undo knows what was done. A helper that does not answer
  is killed, and the engine undoes what it may have done (the undo handles
  "maybe written" and "maybe moved");
* one helper, one file at a time: a kill leaves at most one interrupted tag
  write (the untearable write's backup, which the repair restores the file from).

Tags are written by the helper only when beets' events around writes and
moves have no listeners, so no plugin is skipped: the engine still sends them
(to nobody) and the tags written are exactly the changed fields.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .beets_compat import reopen_after_fork
from .errors import Cancelled, ClaimLost, RunAborted
from .workers import FileDone, FileTask, Reply, describe, file_work

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

    from beets.library import Item, Library

    from .claim import LibraryLock

_PR_SET_PDEATHSIG = 1
# Liveness: the parent never waits on the helper without bounds. While it
# waits for a reply it looks at the helper every POLL seconds:
STOP_PATIENCE = 1.5  # a stopping helper's reports (Ctrl-C, cancel, an error): then it is killed
STOPPED_AFTER = 3.0  # stopped (SIGSTOP, a debugger) this long: the run ends, naming it
WEDGED_AFTER = 30.0  # running, but no file or destination finished in this long: likewise
CANCEL_AFTER = 1.0  # a wait this long also asks whether the run was cancelled
POLL = 0.1
SLOTS = 64  # destination requests that can be out at once (each has its two counters)
BEAT = 2 * SLOTS  # the counter of finished tasks (the helper's heartbeat), after the slots' counters


@dataclass
class DestinationDone:
    key: int
    dest: bytes | None = None
    error: str | None = None  # as ``describe`` words it, "{file}" standing for the item's file


def available(claim: LibraryLock | None) -> bool:
    """Whether a helper can be had here: a claim to share, fork, the kernel's
    parent-death signal (Linux), and no other thread in this process.

    A forked child has only the thread that forked. A lock another thread
    held at that instant stays held in the child for good: SQLite's memory
    mutex while a web request reads the library, a module's import lock, a
    logging handler's. The child then hangs on its first use of it (seen:
    a web job's helper stuck in ``sqlite3_free`` until the wedge timeout
    failed the job). So only a single-threaded process (the command line)
    forks a helper; a web server's jobs and the import hook (beets' import
    pipeline runs threads) do their file work in their own process."""
    return (claim is not None and sys.platform.startswith("linux") and hasattr(os, "fork")
            and threading.active_count() == 1)


class Helper:
    """The parent's handle: send requests, read the replies in order, stop."""

    def __init__(self, lib: Library, claim: LibraryLock, id3v23: bool,
                 shield: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        # ``shield`` holds Ctrl-C and stop signals while a message crosses the
        # pipe: one cut in half would leave the stream unreadable both ways.
        self._shield = shield
        context = multiprocessing.get_context("fork")
        self._conn, child = context.Pipe()
        self._stop = context.Event()
        # Per destination request: items the helper has begun, items it may do (shared after the fork).
        self._memory = mmap.mmap(-1, (2 * SLOTS + 1) * 8)
        counters = memoryview(self._memory).cast("q")
        self._begun, self._limit, self._beat = counters[:SLOTS], counters[SLOTS:BEAT], counters[BEAT:]
        self._slot = 0
        shared = claim.share()
        try:
            self._process = context.Process(
                target=_serve, name="beets-unmarked helper", daemon=True,
                args=(child, self._stop),
                kwargs={"lib": lib, "lock_path": claim.path, "shared_fd": shared, "store_path": claim.store_path,
                        "store_identity": claim.store_identity, "parent": os.getpid(), "id3v23": id3v23,
                        "counters": (self._begun, self._limit), "beat": self._beat})
            self._process.start()
        finally:
            os.close(shared)  # the helper has its copy
            child.close()
        self._waiting: deque[str] = deque()  # kinds of the requests not answered yet

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def busy(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._waiting)

    def awaits(self, kind: str) -> bool:
        """A request of this kind is not answered yet."""
        return kind in self._waiting

    def send_files(self, tasks: list[FileTask]) -> None:
        self._send("files", tasks)

    def send_destinations(self, rows: list[tuple[int, Any, dict[str, Any]]]) -> int:
        """Ask for these items' destinations; returns the request's slot (see ``steal``)."""
        if self._waiting.count("destinations") >= SLOTS:
            raise RuntimeError("too many destination requests out")
        slot, self._slot = self._slot, (self._slot + 1) % SLOTS
        self._begun[slot], self._limit[slot] = 0, len(rows)  # the helper is done with this slot's last request
        self._send("destinations", (slot, rows))
        return slot

    def steal(self, slot: int) -> int | None:
        """The index of the last item of the request in ``slot`` that the
        helper has not begun, now the caller's to compute (the helper stops
        before it); None once the helper has begun every item left to it."""
        limit = self._limit[slot]
        if self._begun[slot] >= limit:
            return None
        self._limit[slot] = limit - 1
        return limit - 1

    def _send(self, kind: str, payload: Any) -> None:
        try:
            with self._shield():
                self._conn.send((kind, payload))
        except (OSError, ValueError) as exc:
            raise self._gone() from exc
        self._waiting.append(kind)

    def receive(self, cancelled: Callable[[], bool] = lambda: False) -> Reply:
        """The next reply. Waits as long as the helper makes progress; its
        death, a stop (SIGSTOP) of ``STOPPED_AFTER`` seconds, or no task
        finished in ``WEDGED_AFTER`` is a ``RunAborted``; so is ``cancelled()``
        once a wait has lasted ``CANCEL_AFTER`` (a ``Cancelled``). Ctrl-C ends
        the wait at once (nothing is read yet)."""
        try:
            self._wait(cancelled)
            with self._shield():
                reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone() from exc
        return self._waiting.popleft(), reply

    def _wait(self, cancelled: Callable[[], bool]) -> None:
        began = progressed = time.monotonic()
        beat, stopped_since = self._beat[0], None
        while not self._conn.poll(POLL):
            now = time.monotonic()
            if self._beat[0] != beat:
                beat, progressed = self._beat[0], now
            state = process_state(self._process.pid)
            if state is None or state in "ZX":
                raise self._gone()
            stopped_since = (stopped_since or now) if state in "Tt" else None
            if stopped_since is not None and now - stopped_since >= STOPPED_AFTER:
                raise self._stuck(f"it has been stopped (state {state}: SIGSTOP or a debugger) "
                                  f"for {STOPPED_AFTER:g} s")
            if now - progressed >= WEDGED_AFTER:
                raise self._stuck(f"it finished no file in {WEDGED_AFTER:g} s (state {state})")
            if now - began >= CANCEL_AFTER and cancelled():
                raise Cancelled("cancelled while the run's helper process was busy")

    def _stuck(self, why: str) -> RunAborted:
        self._waiting.clear()
        return RunAborted(f"the run's helper process stopped responding: {why}; it was ended")

    def _gone(self) -> RunAborted:
        self._process.join(1)
        code = self._process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        self._waiting.clear()
        return RunAborted(f"the run's helper process stopped unexpectedly ({how})")

    def stop(self) -> list[Reply] | None:
        """Stop after the item in hand; the replies to everything sent (items
        not tried are ``skipped``), or None if the helper did not answer
        within ``STOP_PATIENCE`` or is stopped (it is killed then, and what it
        did is unknown: the engine's undo finds out from the files)."""
        self._stop.set()
        replies: list[Reply] = []
        deadline = time.monotonic() + STOP_PATIENCE
        try:
            while self._waiting:
                while not self._conn.poll(POLL):
                    state = process_state(self._process.pid)
                    if state is None or state in "ZXTt" or time.monotonic() >= deadline:
                        raise TimeoutError
                with self._shield():
                    replies.append((self._waiting.popleft(), self._conn.recv()))
        except Exception:  # dead, stopped, stuck, or a reply that cannot be read
            self.kill()
            return None
        self.close()
        return replies

    def close(self) -> None:
        """End the helper (after its last reply)."""
        try:
            with self._shield():
                self._conn.send(None)
        except (OSError, ValueError):
            pass
        self._process.join(STOP_PATIENCE)
        if self._process.is_alive():
            self.kill()
        self._conn.close()

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()  # (SIGKILL ends a stopped process too)
        self._process.join()
        self._conn.close()


def process_state(pid: int | None) -> str | None:
    """The kernel's one-letter state of a process (R, S, D, T, t, Z, ...), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


# --- the helper's side -----------------------------------------------------------


def _serve(conn: Connection, stop: Event, *, lib: Library, lock_path: str, shared_fd: int, store_path: str,
           store_identity: tuple[int, int] | None, parent: int, id3v23: bool,
           counters: tuple[memoryview, memoryview], beat: memoryview) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops us)
    for signum in (signal.SIGTERM, signal.SIGHUP):  # not a server's handlers (gunicorn's, say): just end
        signal.signal(signum, signal.SIG_DFL)
    _die_with(parent)
    from .claim import LibraryLock

    claim = LibraryLock(lock_path, shared_fd, store_path, store_identity)  # our copy of the parent's lock
    reopen_after_fork(lib)
    lost: str | None = None
    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        if request is None:
            break
        kind, payload = request
        if kind == "files":
            replies: list[Any] = []
            for task in payload:
                if lost is not None or stop.is_set():
                    replies.append(FileDone(task.key, skipped=True))
                    continue
                try:
                    claim.check()
                except ClaimLost as exc:
                    lost = str(exc)
                    replies.append(FileDone(task.key, lost=lost))
                    continue
                replies.append(file_work(task, id3v23))
                beat[0] += 1  # (only this process writes it)
            conn.send(replies)
        else:
            conn.send(_destinations(lib, counters, *payload))
            beat[0] += 1
    os._exit(0)


def _destinations(lib: Library, counters: tuple[memoryview, memoryview], slot: int,
                  rows: list[tuple[int, Any, dict[str, Any]]]) -> list[DestinationDone]:
    """The destinations of the items in order, up to those the parent took (``Helper.steal``)."""
    begun, limit = counters
    done = []
    for index, (key, row, changes) in enumerate(rows):
        begun[slot] = index + 1  # first say so, then look whether it is still ours
        if index >= limit[slot]:
            break
        done.append(_destination(lib, key, row, changes))
    return done


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this process when the parent dies; if it is dead already, go."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux after all
        pass
    if os.getppid() != parent:
        os._exit(1)


def _destination(lib: Library, key: int, row: Any, changes: dict[str, Any]) -> DestinationDone:
    from beets.library import Item

    from .beets_compat import model_from_row, path_format_chooser

    global _chooser
    names, values, flex = row
    try:
        item: Item = model_from_row(Item, lib, dict(zip(names, values)), dict(flex))
        for field, value in changes.items():  # as the rules left it in the parent
            item[field] = value
        if _chooser is None:
            _chooser = path_format_chooser(lib)
        return DestinationDone(key, dest=_chooser(item))
    except Exception as exc:
        return DestinationDone(key, error=describe(exc, "{file}"))


_chooser: Any = None
