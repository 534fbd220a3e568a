"""Many SSE clients at once, some of which never read: the job and the readers are unharmed."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .sse_client import EventSource
from .test_web_api import add_many


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
        job = server.post("/api/jobs", json={"op": "process"}).json()
        stalled = [stalled_client(server, job["events"]) for _ in range(10)]
        results: list[list[int]] = []

        def read() -> None:
            results.append([event.id for event in EventSource(server.url(job["events"])).events()])

        readers = [threading.Thread(target=read) for _ in range(10)]
        for reader in readers:
            reader.start()
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
