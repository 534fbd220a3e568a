"""50 SSE clients on one job, half of which never read: does the job slow down?

Two identical copies of a generated library; the same job runs on each under
`beet web`: once with a single follower, once with 25 reading clients and 25
that connect and never read a byte. Reported: the engine's items/s in both,
the ratio, and the server's memory.

    python bench/sse_load.py --items 3000 --clients 50
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import rss_mib, start_beet_web, table  # noqa: E402
from operations_bench import fresh_copy, generate  # noqa: E402
from sse_followers import follow  # noqa: E402


def open_stream(port: int, path: str, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def reader(port: int, path: str, counts: list[int]) -> None:
    """Reads the job's events to its `done`, resuming after each bounded response."""
    counts.append(len(follow(port, path)["ids"]))


def run(root: Path, op: str, clients: int, stalled_share: float = 0.5) -> dict[str, float]:
    server, base, port = start_beet_web(root)
    before = rss_mib(server.pid)
    job = requests.post(base + "/api/jobs", json={"op": op}, timeout=60).json()
    stalled = [open_stream(port, job["events"], rcvbuf=4096) for _ in range(int(clients * stalled_share))]
    counts: list[int] = []
    readers = [threading.Thread(target=reader, args=(port, job["events"], counts)) for _ in range(max(1, clients - len(stalled)))]
    for thread in readers:
        thread.start()
    peak = before
    while any(thread.is_alive() for thread in readers):
        peak = max(peak, rss_mib(server.pid))
        time.sleep(0.1)
    summary = requests.get(base + f"/api/jobs/{job['job']}", timeout=30).json()
    stat = Path(f"/proc/{server.pid}/stat").read_text().split()
    cpu = (int(stat[13]) + int(stat[14])) / os.sysconf("SC_CLK_TCK")
    for sock in stalled:
        sock.close()
    server.terminate()
    server.wait()
    assert all(count == job["total"] + 2 for count in counts), counts
    seconds = summary["finished"] - summary["started"]
    return {"speed": job["total"] / seconds, "seconds": seconds, "before": before, "peak": peak, "cpu": cpu,
            "readers": len(readers), "stalled": len(stalled)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--op", default="rename")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-sseload-"))
    try:
        generate(base / "template", args.items)
        alone = run(fresh_copy(base / "template", base / "alone"), args.op, 1)
        crowd = run(fresh_copy(base / "template", base / "crowd"), args.op, args.clients)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = []
    for name, r in (("1 reader", alone), (f"{crowd['readers']} readers + {crowd['stalled']} never reading", crowd)):
        rows.append([name, f"{r['speed']:.0f} items/s ({r['seconds']:.1f} s)", f"{r['before']:.0f} / {r['peak']:.0f} MiB"])
    rows.append(["speed with the crowd / alone", f"{crowd['speed'] / alone['speed']:.2f}", ""])
    print(table([f"{args.items}-item {args.op} job, clients", "engine speed", "server RSS before / peak"], rows))


if __name__ == "__main__":
    main()
