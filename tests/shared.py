"""What many tests need, written once: libraries to fill, the real command to start, an engine to drive."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from typing import Any

from beetsplug.unmarked.engine import Engine, Settings
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import Journal
from beetsplug.unmarked.normalize import Rules
from beetsplug.unmarked.operations import OPERATIONS
from beetsplug.unmarked.results import ItemResult, Summary

from .audio import MESSY_TRACKS
from .gates import progress, store
from .libenv import BEET, LibraryEnv

EXTS = ["flac", "ogg", "mp3"]


# --- libraries ---------------------------------------------------------------------


def add_many(env: LibraryEnv, count: int, artist: str = "Artist") -> list[int]:
    """Tracks whose titles all need normalizing (so every item writes its file)."""
    items = env.add_tracks(
        (f"{artist}{n:04d}.{EXTS[n % 3]}", {"title": f"  Song   {n} ft. X", "artist": artist, "album": "LP"})
        for n in range(count)
    )
    return [item.id for item in items]


def populate(env: LibraryEnv, count: int, albums: bool = True) -> list[int]:
    """``count`` messy tracks, half inside the library directory, half
    outside; with ``albums``, the first half grouped ten to an album, so
    album rows and art moves are exercised too."""
    ids = []
    for n in range(count):
        tags = dict(MESSY_TRACKS[n % len(MESSY_TRACKS)])
        tags["title"] = f"{tags['title']} {n}"
        tags["tracknumber"] = str(n % 12 + 1)
        where = env.incoming if n % 2 else env.lib_path / "unsorted"
        ids.append(env.add_track(f"{n:04d}.{EXTS[n % 3]}", tags, where=where).id)
    if albums:
        items = list(env.lib.items())
        for start in range(0, len(items) // 2, 10):
            env.lib.add_album(items[start:start + 10])
    return ids


# --- the real command ------------------------------------------------------------------


def beet_env(env: LibraryEnv, **extra: str) -> dict[str, str]:
    return {**os.environ, "BEETSDIR": str(env.temp_path), "HOME": str(env.temp_path), **extra}


def start_beet(env: LibraryEnv, *args: str, prefix: tuple[str, ...] = (), text: bool = True,
               **extra: str) -> subprocess.Popen[Any]:
    """A real ``beet`` on this library, its output captured (``extra``: environment variables)."""
    return subprocess.Popen([*prefix, BEET, *args], env=beet_env(env, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=text)


def stopped_run(env: LibraryEnv, op: str, how: signal.Signals, share: float) -> int:
    """A real ``beet OP`` stopped by signal ``how`` once ``share`` of its items
    are done or under way, read from the job store as another process would
    (committed items plus those with a journaled intent: item-granular, see
    gates.py). Aimed by observed progress, not by elapsed time, so the
    signal lands mid-run on any machine. Returns the exit status."""
    jobs = store(env)
    before = (jobs.list(1) or [{"job": 0}])[0]["job"]
    proc = subprocess.Popen([BEET, op], env=beet_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # (not inherited ignored)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        job = jobs.list(1)
        if job and job[0]["job"] > before and job[0]["total"]:
            if progress(env, job[0]["job"]) >= max(1, round(share * job[0]["total"])):
                break
        time.sleep(0.002)
    proc.send_signal(how)
    proc.communicate(timeout=120)
    return proc.returncode


def wait_while_running(proc: subprocess.Popen[Any], ready: Any, timeout: float = 60) -> bool:
    """Poll ``ready()`` until true; False if the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    raise AssertionError("the run never got there")


# --- the engine, in this process ---------------------------------------------------------


class Recorder:
    """A sink that keeps what a run reports; ``cancel_after``: its ``stop``
    says yes once that many items are reported."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.started: list[int] = []
        self.results: list[tuple[int, ItemResult]] = []
        self.summary: Summary | None = None
        self.cancel_after = cancel_after

    def start(self, total: int) -> None:
        self.started.append(total)

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        self.results += numbered

    def done(self, summary: Summary) -> None:
        self.summary = summary

    def stop(self) -> bool:
        return self.cancel_after is not None and len(self.results) >= self.cancel_after


def engine(env: LibraryEnv, op: str, journal: Journal | None = None, cls: type[Engine] = Engine,
           settings: Settings | None = None, **kwargs: Any) -> Engine:
    """The engine for ``op`` on this library, journaling as job 1."""
    store = JobStore(store_path(env.lib))
    return cls(env.lib, OPERATIONS[op], rules=Rules.from_config(env.config["unmarked"]),
               settings=settings or Settings(batch_size=200, batch_seconds=60),
               log=logging.getLogger("beets.unmarked"), journal=journal or Journal(store, 1), **kwargs)
