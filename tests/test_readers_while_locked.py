"""A job waiting for another program's write lock does not stall the server's readers."""

from __future__ import annotations

import time

from .gates import library_write_lock, wait_in_flight
from .libenv import LibraryEnv
from .servers import Server
from .shared import add_many


def test_the_page_s_reads_answer_while_the_job_waits_for_the_library(env: LibraryEnv, server: Server) -> None:
    add_many(env, 10)
    with library_write_lock(env):
        server.post("/api/jobs", json={"op": "normalize"})
        wait_in_flight(env, 10)  # every item journaled: the job is at its commit, waiting
        slowest = 0.0
        for _ in range(5):
            began = time.monotonic()
            answer = server.get("/api/unmarked", params={"op": "normalize", "limit": 5})
            slowest = max(slowest, time.monotonic() - began)
            assert answer.status_code == 200 and answer.json()["count"] == 10
    assert slowest < 1.0, f"a read waited {slowest:.1f} s behind the job's wait for the write lock"
