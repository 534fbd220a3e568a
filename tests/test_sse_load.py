"""Many SSE clients at once, some of which never read: the job and the readers are unharmed.

All clients attach while the library's write lock holds the job at its start
(tests/gates.py), so every one of them is there for all of its events.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from .gates import library_write_lock, store
from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import add_many
from .sse_client import EventSource


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def stalled_client(server: Server, path: str) -> socket.socket:
    """Connects, asks for the stream, and never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def test_twenty_clients_half_of_them_stalled(env: LibraryEnv) -> None:
    web_settings(env)
    add_many(env, 600)
    server = beet_web(env)
    stalled: list[socket.socket] = []
    try:
        baseline = rss_mib(server.proc.pid)
        results: list[list[int]] = []
        attached = threading.Semaphore(0)

        def read() -> None:
            ids = []
            for event in EventSource(server.url(job["events"])).events():
                ids.append(event.id)
                if len(ids) == 1:
                    attached.release()
            results.append(ids)

        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()
            stalled = [stalled_client(server, job["events"]) for _ in range(10)]
            readers = [threading.Thread(target=read) for _ in range(10)]
            for reader in readers:
                reader.start()
            for _ in readers:
                assert attached.acquire(timeout=30), "every reader has its stream"
            assert store(env).get(job["job"])["current"] == 0, "all attached before the first item"
        peak = baseline
        while any(reader.is_alive() for reader in readers):
            peak = max(peak, rss_mib(server.proc.pid))
            time.sleep(0.1)
        summary = server.get(f"/api/jobs/{job['job']}").json()
    finally:
        for sock in stalled:
            sock.close()
        server.stop()
    assert summary["status"] == "completed" and summary["succeeded"] == 600
    assert results == [list(range(1, 603))] * 10, "every reader got every event once"
    assert peak - baseline < 60, f"server memory grew by {peak - baseline:.0f} MiB"
