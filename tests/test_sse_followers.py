"""Followers of a job's events do not starve the server's other requests.

Twelve clients follow a job under real gunicorn, with the default sync worker
and with gthread, while the job is held at its start by the library's write
lock (tests/gates.py); meanwhile the page, the job list and beets' own
``/item/`` are asked again and again. Before: each follower held a worker (or
a thread) for as long as it listened, and those requests waited in line for
seconds, or until the job ended. Then the gate opens and every follower must
get every event exactly once, in order, over the short responses it resumes.
The bound asserted (3 s for the slowest of 30 requests) is loose on purpose:
bench/sse_followers.py measures the real figures.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .gates import library_write_lock, store, wait_for
from .libenv import LibraryEnv
from .servers import beet_web, gunicorn, web_settings
from .shared import add_many
from .sse_client import EventSource

FOLLOWERS = 12
ITEMS = 30
OTHERS = ["/unmarked", "/api/jobs", "/item/1"]
SLOWEST = 3.0  # seconds

WORKERS = {
    "sync": ["-w", "2"],
    "gthread": ["-w", "1", "--worker-class", "gthread", "--threads", "4"],
}


def timed_get(url: str) -> float:
    began = time.monotonic()
    try:
        response = requests.get(url, timeout=SLOWEST * 4)
    except requests.Timeout:
        return SLOWEST * 4
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return time.monotonic() - began


@pytest.mark.parametrize("worker", sorted(WORKERS))
def test_followers_leave_room_for_other_requests(env: LibraryEnv, worker: str) -> None:
    web_settings(env)
    add_many(env, ITEMS)
    server = gunicorn(env, *WORKERS[worker], "--timeout", "30")
    sources: list[EventSource] = []
    try:
        with ThreadPoolExecutor(FOLLOWERS) as pool, library_write_lock(env) as gate:
            created = server.post("/api/jobs", json={"op": "process"})
            assert created.status_code == 202, created.text
            job = created.json()["job"]
            sources = [EventSource(server.url(created.json()["events"])) for _ in range(FOLLOWERS)]
            following = [pool.submit(lambda s=s: [e.id for e in s.events()]) for s in sources]
            wait_for(lambda: all(s.connections for s in sources), "every follower to connect", poll=0.05)
            times = [timed_get(server.url(OTHERS[n % len(OTHERS)])) for n in range(30)]
            assert max(times) <= SLOWEST, f"other requests waited up to {max(times):.2f} s: {sorted(times)[-5:]}"
            assert store(env).get(job)["current"] == 0, "the gate held the job all along"
            gate.release()
            seen = [f.result(timeout=120) for f in following]
        summary = server.get(f"/api/jobs/{job}").json()
    finally:
        server.stop()
    assert summary["status"] == "completed" and summary["succeeded"] == ITEMS
    assert seen == [list(range(1, ITEMS + 3))] * FOLLOWERS, "every follower got every event once, in order"
    assert all(len(s.connections) > 1 for s in sources), "responses end and followers resume"
    assert "WORKER TIMEOUT" not in server.log()


def test_a_follower_far_behind_catches_up_at_once(env: LibraryEnv) -> None:
    """A page opened after a long job gets its backlog in one response, not
    one read's worth (500 events) per retry interval."""
    web_settings(env)
    add_many(env, 520)
    server = beet_web(env)
    try:
        assert server.post("/api/rename-unmarked").json()["status"] == "completed"
        source = EventSource(server.url("/api/jobs/1/events"))
        ids = [event.id for event in source.events()]
    finally:
        server.stop()
    assert ids == list(range(1, 523))
    assert len(source.connections) == 1
