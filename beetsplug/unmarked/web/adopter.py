"""Web jobs outlive their process: every server process adopts orphaned web jobs.

A job started from the browser must finish even if the process running it
dies (a gunicorn worker killed or recycled, ``beet web`` restarted). Each
server process of a library runs one adopter thread: about once a second it
asks whether a job is recorded as running while nobody holds the library
lock (a cheap read first; the lock only when there is something to adopt),
and if so resumes it under the same id (runner.adopt). Other callers (the
CLI, readers) leave a dead web job for a server: only a server can show it.

Started by the first request, by ``create_app()`` (gunicorn) and when
``beet web`` starts serving; restarted in a child after a fork (gunicorn
``--preload``), where the parent's thread does not exist.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING

import beets

from ..beets_compat import library_file, music_dir
from ..errors import ConfigError, StoreError
from ..runner import JobConfig, adopt, run_in_background

if TYPE_CHECKING:
    from beets.library import Library

    from .. import UnmarkedPlugin

ADOPT_EVERY = 1.0  # seconds between looks for an orphaned web job


class Adopter:
    """This process's adopter thread for one library."""

    def __init__(self, lib: Library, plugin: UnmarkedPlugin) -> None:
        self.lib, self.plugin, self.pid = lib, plugin, os.getpid()
        self._complained = ""
        self.thread = threading.Thread(target=self._loop, name="unmarked-adopter", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with music_dir(self.lib):  # paths expand in this thread too
            while True:
                self._once()
                time.sleep(ADOPT_EVERY)

    def _once(self) -> None:
        log = self.plugin._log
        if beets.config["web"]["readonly"].get(bool):  # restarting read-only is how a user stops changes
            return
        try:
            job = adopt(self.lib, JobConfig.from_plugin(self.plugin.config), log)
        except (ConfigError, StoreError) as exc:  # said once, not every second
            if str(exc) != self._complained:
                log.error("cannot resume web jobs: {}", exc)
                self._complained = str(exc)
            return
        except Exception as exc:  # keep adopting; the next look may succeed
            log.error("looking for web jobs to resume failed: {}", exc)
            return
        if job is not None:
            run_in_background(job, log)


_adopters: dict[str, Adopter] = {}
_for_children: dict[str, tuple[Library, UnmarkedPlugin]] = {}  # started in each forked worker
_lock = threading.Lock()


def serve_library(lib: Library, plugin: UnmarkedPlugin, *, in_children_only: bool = False) -> None:
    """Make sure this process adopts orphaned web jobs of ``lib`` (idempotent, cheap).

    ``in_children_only``: this process is a pre-fork master (gunicorn
    ``--preload``). It must not adopt: a job running in it while it forks
    would leave its locks held in every worker. Each forked child starts its own.
    """
    key = library_file(lib)
    if in_children_only:
        _for_children[key] = (lib, plugin)
        return
    adopter = _adopters.get(key)
    if adopter is not None and adopter.pid == os.getpid():
        return
    with _lock:
        adopter = _adopters.get(key)
        if adopter is None or adopter.pid != os.getpid():  # none yet, or inherited through fork
            _adopters[key] = Adopter(lib, plugin)


def _after_fork_in_child() -> None:
    """The parent's adopter threads and lock holders do not exist here: start
    this process's own adopters (a fresh lock: the parent's may have been held)."""
    global _lock
    _lock = threading.Lock()
    wanted = {**_for_children, **{key: (a.lib, a.plugin) for key, a in _adopters.items()}}
    _adopters.clear()
    _for_children.clear()
    for lib, plugin in wanted.values():
        serve_library(lib, plugin)


os.register_at_fork(after_in_child=_after_fork_in_child)
