"""Real servers on loopback sockets: `beet web` and gunicorn, as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from .libenv import BEET, LibraryEnv

GUNICORN = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


RUNNING: set[Server] = set()  # stopped at the end of the session if a test did not (conftest.py)


class Server:
    """A server process for one test; its output goes to a log file."""

    def __init__(self, env: LibraryEnv, command: list[str], port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = env.temp_path / f"server-{port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "BEETSDIR": str(env.temp_path), "HOME": str(env.temp_path)},
        )
        RUNNING.add(self)
        try:
            self.wait_ready()
        except BaseException:  # a server that never became ready must not outlive the test
            self.stop()
            raise

    def url(self, path: str) -> str:
        return self.base + path

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log()}")
            try:
                if requests.get(self.url("/unmarked"), timeout=2).status_code == 200:  # touches no job store
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready:\n{self.log()}")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(path), **{"timeout": 30, **kwargs})

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(path), timeout=120, **kwargs)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole server (all workers): a crash, not a shutdown."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        RUNNING.discard(self)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def web_settings(env: LibraryEnv, readonly: bool = False) -> None:
    env.configure(plugins=["unmarked", "web"], web={"readonly": readonly})


def beet_web(env: LibraryEnv) -> Server:
    port = free_port()
    return Server(env, [BEET, "web", "127.0.0.1", str(port)], port)


def gunicorn(env: LibraryEnv, *options: str) -> Server:
    port = free_port()
    command = [GUNICORN, "-b", f"127.0.0.1:{port}", *options, "beetsplug.unmarked.wsgi:create_app()"]
    return Server(env, command, port)
