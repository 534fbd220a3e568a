"""Followers of a job's events against the server's other requests, under gunicorn.

A generated library, a job over all of it, and F clients following the job's
events (F = 0, 20, 50) under `gunicorn -w 2` with the default sync worker and
with gthread. Meanwhile a client asks for the page, the job list and beets' own `/item/1`
in turn, ten requests a second whatever the answers take (open loop), and
times each answer.

Reported per run: those requests' p50 / p99 / max; the events' delay (from
the moment the event is in the job store, seen by polling it every 10 ms, to
the moment a follower reads it: p50 / p99 over every follower and event);
the requests each follower made per minute; the job's length; and whether
every follower got every event exactly once, in order.

    python bench/sse_followers.py --items 500 --followers 0 20 50
    python bench/sse_followers.py --code /path/to/other/tree   # the same, serving another tree's plugin

Followers run in a process of their own (threads, raw HTTP/1.0 sockets that
resume with Last-Event-ID as EventSource does), so their parsing does not
slow the timed client.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, free_port, table  # noqa: E402
from operations_bench import fresh_copy, generate  # noqa: E402

WORKERS = {
    "sync": ["-w", "2"],
    "gthread": ["-w", "2", "--worker-class", "gthread", "--threads", "4"],
}
OTHERS = ["/unmarked", "/api/jobs", "/item/1"]


def follow(port: int, path: str) -> dict[str, Any]:
    """Read a job's events to its `done`, resuming like EventSource."""
    last, retry, connections = 0, 3.0, 0
    ids: list[int] = []
    arrived: dict[int, float] = {}
    while True:
        connections += 1
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nLast-Event-ID: {last}\r\n\r\n".encode())
            data, head, done = b"", None, False
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                now = time.time()
                data += chunk
                if head is None:
                    if b"\r\n\r\n" not in data:
                        continue
                    head, data = data.split(b"\r\n\r\n", 1)
                    if b" 204 " in head.split(b"\r\n", 1)[0]:
                        return {"ids": ids, "arrived": arrived, "connections": connections}
                while b"\n\n" in data:
                    block, data = data.split(b"\n\n", 1)
                    for line in block.decode().split("\n"):
                        name, _, value = line.partition(": ")
                        if name == "id":
                            last = int(value)
                            ids.append(last)
                            arrived.setdefault(last, now)
                        elif name == "retry":
                            retry = int(value) / 1000
                        elif name == "event" and value == "done":
                            done = True
        if done:
            return {"ids": ids, "arrived": arrived, "connections": connections}
        time.sleep(retry)


def followers(port: int, path: str, count: int, results: Any) -> None:
    """In a child process: ``count`` followers in threads; their records go to ``results``."""
    records: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: records.append(follow(port, path))) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(records)


def store_watch(store: Path, job: int, stop: threading.Event, seen: dict[int, float]) -> None:
    """When each event first exists in the job store (10 ms resolution)."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
    while not stop.is_set():
        now = time.time()
        try:
            for (seq,) in conn.execute("SELECT seq FROM events WHERE job = ? AND seq > ?", (job, max(seen, default=0))):
                seen.setdefault(seq, now)
        except sqlite3.OperationalError:
            pass
        time.sleep(0.01)
    conn.close()


def start_gunicorn(root: Path, worker: str, code: str | None) -> tuple[subprocess.Popen, str, int]:
    config = root / "config.yaml"
    config.write_text(config.read_text().replace("- unmarked", "- unmarked\n- web") + "\nweb: {readonly: no}\n")
    port = free_port()
    env = {**os.environ, "BEETSDIR": str(root)}
    if code:
        env["PYTHONPATH"] = code
    server = subprocess.Popen([str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", *WORKERS[worker], "--timeout", "30",
                               "beetsplug.unmarked.wsgi:create_app()"],
                              env=env, cwd=root,  # gunicorn puts its cwd first on sys.path
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(base + "/unmarked", timeout=10).status_code == 200:
                return server, base, port
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.terminate()
    raise RuntimeError(f"gunicorn ({worker}) did not start")


def probe(base: str, store: Path, job: int, every: float = 0.1) -> list[float]:
    """Ask for the page, the job list and beets' /item/1 in turn, one request
    every ``every`` seconds whatever the answers take (open loop: a slow
    answer does not hide the requests that would have waited behind it),
    until the job has ended; the answers' times."""
    times: list[float] = []

    def timed(path: str) -> None:
        began = time.monotonic()
        answer = requests.get(base + path, timeout=300)
        assert answer.status_code == 200, (path, answer.status_code)
        times.append(time.monotonic() - began)

    sent: list[threading.Thread] = []
    ended = threading.Event()

    def watch() -> None:  # the job's status, from outside the timed requests
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
        while conn.execute("SELECT status FROM jobs WHERE id = ?", (job,)).fetchone()[0] in ("queued", "running"):
            time.sleep(0.05)
        conn.close()
        ended.set()

    threading.Thread(target=watch).start()
    n = 0
    while not ended.is_set():
        thread = threading.Thread(target=timed, args=(OTHERS[n % len(OTHERS)],))
        thread.start()
        sent.append(thread)
        n += 1
        ended.wait(every)
    for thread in sent:
        thread.join()
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(root: Path, worker: str, count: int, code: str | None) -> dict[str, Any]:
    server, base, port = start_gunicorn(root, worker, code)
    try:
        job = requests.post(base + "/api/jobs", json={"op": "process"}, timeout=60).json()
        seen: dict[int, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=store_watch, args=(root / "library.db-unmarked.db", job["job"], stop, seen))
        watcher.start()
        results: Any = multiprocessing.Queue()
        crowd = multiprocessing.Process(target=followers, args=(port, job["events"], count, results))
        crowd.start()
        times = probe(base, root / "library.db-unmarked.db", job["job"])
        records = results.get(timeout=600) if count else []
        crowd.join()
        stop.set()
        watcher.join()
        summary = requests.get(base + f"/api/jobs/{job['job']}", timeout=300).json()
    finally:
        server.terminate()
        server.wait()
    seconds = summary["finished"] - summary["started"]
    expected = list(range(1, job["total"] + 3))
    delays = [(r["arrived"][seq] - seen[seq]) * 1000 for r in records for seq in r["arrived"] if seq in seen]
    return {
        "p50": percentile(times, 0.5) * 1000, "p99": percentile(times, 0.99) * 1000, "max": max(times) * 1000,
        "requests": len(times), "seconds": seconds,
        "delay50": percentile(delays, 0.5) if delays else None, "delay99": percentile(delays, 0.99) if delays else None,
        "per_minute": statistics.mean(r["connections"] for r in records) / seconds * 60 if records else None,
        "exact": all(r["ids"] == expected for r in records),
    }


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--followers", type=int, nargs="+", default=[0, 20, 50])
    parser.add_argument("--workers", nargs="+", default=list(WORKERS), choices=list(WORKERS))
    parser.add_argument("--code", help="serve the plugin from this source tree instead (PYTHONPATH)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-followers-"))
    rows = []
    try:
        generate(base / "template", args.items)
        for worker in args.workers:
            for count in args.followers:
                r = run(fresh_copy(base / "template", base / f"{worker}-{count}"), worker, count, args.code)
                rows.append([worker, count, f"{r['p50']:.0f} / {r['p99']:.0f} / {r['max']:.0f}", r["requests"],
                             f"{ms(r['delay50'])} / {ms(r['delay99'])}", ms(r["per_minute"]),
                             f"{r['seconds']:.1f}", "yes" if r["exact"] else "NO"])
                print(" | ".join(str(c) for c in rows[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(["worker (-w 2)", "followers", "other requests p50 / p99 / max ms", "n",
                 "event delay p50 / p99 ms", "requests per follower per min", "job s",
                 "every event once, in order"], rows))


if __name__ == "__main__":
    main()
