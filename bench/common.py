"""Shared pieces of the benchmarks: generated libraries, fsync counting, tables.

Every benchmark runs the plugin and the beets command it is compared with on
the same generated library in one run, and reports ratios: these machines are
noisy, absolute times drift.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BEET = str(BIN / "beet")
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


@dataclass
class Measured:
    """Wall time of a whole command and the fsync/fdatasync calls it made;
    with GNU time available, also its CPU seconds (user + sys, children
    included) and peak resident set size (the largest single process)."""

    seconds: float
    fsyncs: int
    output: str = ""
    cpu_seconds: float | None = None
    peak_rss_mib: float | None = None
    work_seconds: float | None = None  # the floor's own timing of its work, without start-up
    written_mib: float | None = None  # block output (rusage oublock, children included): what went to storage
    store_mib: float | None = None  # the job store's files after the run

    @property
    def cpu_use(self) -> float | None:
        """(user + sys) / wall: 1.0 is one core busy the whole time."""
        return None if self.cpu_seconds is None else self.cpu_seconds / self.seconds

    def __add__(self, other: Measured) -> Measured:
        """Two commands run one after the other, as one."""
        cpu = None if self.cpu_seconds is None or other.cpu_seconds is None else self.cpu_seconds + other.cpu_seconds
        rss = None if self.peak_rss_mib is None or other.peak_rss_mib is None \
            else max(self.peak_rss_mib, other.peak_rss_mib)
        fsyncs = -1 if self.fsyncs < 0 or other.fsyncs < 0 else self.fsyncs + other.fsyncs  # -1: not counted
        return Measured(self.seconds + other.seconds, fsyncs, self.output + other.output, cpu, rss)


def write_config(beetsdir: Path, music: Path, extra: dict | None = None) -> Path:
    beetsdir.mkdir(parents=True, exist_ok=True)
    settings = {
        "directory": str(music),
        "library": str(beetsdir / "library.db"),
        "plugins": ["unmarked"],
        "create_backup_before_migrations": False,
        "paths": {"default": "$albumartist/$album/$track $title"},
        "ui": {"color": False},
        **(extra or {}),
    }
    (beetsdir / "config.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    return beetsdir / "library.db"


def new_library(db_path: Path, music: Path) -> Any:
    """An empty beets library with the current schema (migrations done)."""
    import beets
    from beets.library import Library

    beets.config["create_backup_before_migrations"] = False
    return Library(str(db_path), str(music))


def bulk_add_items(db_path: Path, music: Path, count: int, paths: list[str] | None = None) -> None:
    """Insert ``count`` item rows in one transaction (beets' add() is ~1 ms/item).

    Rows get title/artist/album/track/format/path like a real library; ``paths``
    (relative to the music dir) default to files that need not exist.
    """
    lib = new_library(db_path, music)
    lib._close()
    now = time.time()
    rows = []
    for i in range(count):
        rel = paths[i] if paths else f"old/{i // 100:04d}/{i:06d}.mp3"
        rows.append((
            f"Title {i}", f"Artist {i % 97}", f"Album {i // 12}", f"Artist {i % 97}",
            i % 12 + 1, "MP3", rel.encode(), now, 0,
        ))
    with sqlite3_connect(db_path) as conn:
        conn.executemany(
            "INSERT INTO items (title, artist, album, albumartist, track, format, path, added, mtime)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def sqlite3_connect(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(str(path))


_STRACE_TOTAL = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$", re.M)


def run_measured(cmd: list[str], beetsdir: Path, extra_env: dict | None = None, count_fsync: bool = True) -> Measured:
    """Run a command (with BEETSDIR) under strace; time it and count fsyncs.

    strace's --seccomp-bpf stops only on the traced calls, so timing under it
    stays close to an untraced run.
    """
    env = {**os.environ, "BEETSDIR": str(beetsdir), "HOME": str(beetsdir), **(extra_env or {})}
    summary = beetsdir / "strace.txt"
    usage = beetsdir / "time.txt"
    prefix = ["strace", "-f", "--seccomp-bpf", "-c", "-o", str(summary), "-e", "trace=fsync,fdatasync"]
    # GNU time inside strace: its rusage is the command's (and its children's), not strace's
    timer = [GNU_TIME, "-o", str(usage), "-f", "%U %S %M %O"] if GNU_TIME else []
    full = (prefix if count_fsync and shutil.which("strace") else []) + timer + cmd
    start = time.perf_counter()
    result = subprocess.run(full, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{cmd} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    fsyncs = -1
    if count_fsync and summary.exists():
        fsyncs = sum(int(n) for n, _ in _STRACE_TOTAL.findall(summary.read_text()))
        summary.unlink()
    cpu = rss = written = None
    if timer and usage.exists():
        user, system, kib, blocks = usage.read_text().split()[-4:]  # a non-zero exit adds a line before
        cpu, rss, written = float(user) + float(system), int(kib) / 1024, int(blocks) * 512 / 2**20
        usage.unlink()
    return Measured(seconds, fsyncs, result.stdout + result.stderr, cpu, rss, written_mib=written)


def child_json(output: str) -> dict:
    """The last JSON line a child script printed."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON in output:\n{output[-2000:]}")


def table(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_beet_web(root: Path) -> tuple[subprocess.Popen, str, int]:
    """`beet web` with writes allowed on the library in ``root``; (process, base URL, port)."""
    import requests

    config = root / "config.yaml"
    config.write_text(config.read_text().replace("- unmarked", "- unmarked\n- web") + "\nweb: {readonly: no}\n")
    port = free_port()
    server = subprocess.Popen([BEET, "web", "127.0.0.1", str(port)], env={**os.environ, "BEETSDIR": str(root)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(base + "/api/jobs", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    return server, base, port
