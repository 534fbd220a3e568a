"""Marking over HTTP and the preview, on big libraries served by `beet web`.

- ``POST /api/mark`` and ``POST /api/unmark`` with 100 000 ids: the request's
  wall time and the fsync/fdatasync calls the server made for it (strace
  attached to the running server, every thread, only around the request),
  next to ``beet mark --all`` (the CLI's one-write path) on the same library;
- ``GET /api/preview``: the first page (50 items) of a 20 000-item library,
  cold and warm, and a page deep in it.

    python bench/mark_http_bench.py --items 100000 --preview-items 20000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import _STRACE_TOTAL, BEET, bulk_add_items, run_measured, start_beet_web, table, write_config

if TYPE_CHECKING:
    from collections.abc import Callable


def _n(count: int) -> str:
    return f"{count:,}".replace(",", " ")


def traced(pid: int, work: Callable[[], Any], out: Path) -> tuple[Any, int]:
    """Run ``work`` with strace attached to every thread of ``pid``; (result, fsyncs)."""
    tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-e", "trace=fsync,fdatasync", "-p", str(pid)],
                              stderr=subprocess.PIPE, text=True)
    assert tracer.stderr is not None
    line = tracer.stderr.readline()  # "strace: Process N attached"
    if "attached" not in line:
        raise RuntimeError(f"strace could not attach: {line}{tracer.stderr.read()}")
    try:
        result = work()
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=30)
    fsyncs = sum(int(n) for n, _ in _STRACE_TOTAL.findall(out.read_text()))
    return result, fsyncs


def timed_post(base: str, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = requests.post(base + path, json=body, timeout=600)
    seconds = time.perf_counter() - began
    response.raise_for_status()
    return seconds, response.json()


def commits(db: Path) -> int:
    """SQLite's file change counter: +1 per committed write transaction (rollback journal)."""
    with open(db, "rb") as f:
        return int.from_bytes(f.read(28)[24:28], "big")


def bench_marking(root: Path, count: int) -> list[list[object]]:
    music = root / "music"
    db = write_config(root, music)
    bulk_add_items(db, music, count)
    with sqlite3.connect(db) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM items ORDER BY id")]
    server, base, _ = start_beet_web(root)
    rows: list[list[object]] = []
    try:
        for path in ("/api/mark", "/api/unmark"):
            before = commits(db)
            body = {"op": "process", "ids": ids}
            work = lambda p=path: timed_post(base, p, body)  # noqa: E731
            (seconds, answer), fsyncs = traced(server.pid, work, root / "strace.txt")
            changed = sum(answer["changed"].values())
            rows.append([f"`POST {path}` (op process, {_n(count)} ids)", f"{seconds:.2f}", fsyncs,
                         commits(db) - before, f"{answer['matched']} matched, {changed} markers"])
    finally:
        server.terminate()
        server.wait()
    before = commits(db)
    cli = run_measured([BEET, "mark", "--op", "process", "--all"], root)
    rows.append([f"`beet mark --op process --all` (CLI, same {_n(count)} items)", f"{cli.seconds:.2f}", cli.fsyncs,
                 commits(db) - before, cli.output.strip().splitlines()[-1]])
    return rows


def dummy_files(root: Path, music: Path, count: int) -> list[str]:
    """Empty files where the rows say: pretend mode never opens a file, but checks it exists."""
    paths = []
    for n in range(count):
        rel = f"old/{n // 1000:03d}/{n:06d}.mp3"
        target = music / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
        paths.append(rel)
    return paths


def bench_preview(root: Path, count: int, runs: int) -> list[list[object]]:
    music = root / "music"
    db = write_config(root, music)
    bulk_add_items(db, music, count, paths=dummy_files(root, music, count))
    with sqlite3.connect(db) as conn:  # messy titles: every item has a tag change to show
        conn.execute("UPDATE items SET title = '  ' || title || ' ft. Guest'")
    server, base, _ = start_beet_web(root)
    rows: list[list[object]] = []
    try:
        for label, params in (("first page", {"op": "process"}),
                              ("a page in the middle", {"op": "process", "offset": str(count // 2)})):
            timings = []
            for _ in range(runs):
                began = time.perf_counter()
                answer = requests.get(base + "/api/preview", params=params, timeout=60).json()
                timings.append(time.perf_counter() - began)
            assert answer["count"] == count, answer
            assert len(answer["items"]) == 50, answer
            rows.append([f"`GET /api/preview` {label} (50 of {_n(count)})",
                         f"{timings[0] * 1000:.0f} ms", f"{statistics.median(timings[1:]) * 1000:.0f} ms",
                         f"{min(timings) * 1000:.0f} ms"])
    finally:
        server.terminate()
        server.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="items to mark and unmark over HTTP")
    parser.add_argument("--preview-items", type=int, default=20_000, help="library size for the preview timing")
    parser.add_argument("--runs", type=int, default=6, help="preview requests per measure (the first is cold)")
    args = parser.parse_args()
    if not shutil.which("strace"):
        sys.exit("strace is needed to count fsyncs (apt-get install strace)")
    roots = [Path(tempfile.mkdtemp(prefix="unmarked-markbench-")) for _ in range(2)]
    try:
        print(f"marking {args.items} items over HTTP ...", file=sys.stderr)
        marking = bench_marking(roots[0], args.items)
        print(f"previewing a {args.preview_items}-item library ...", file=sys.stderr)
        preview = bench_preview(roots[1], args.preview_items, args.runs)
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    print(table(["request", "seconds", "fsyncs", "commits", "answer"], marking))
    print()
    print(table(["request", "cold", "warm (median)", "best"], preview))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
