"""Under real gunicorn: a job longer than --timeout, sync and gthread workers.

The job is held past --timeout by the library's write lock (tests/gates.py),
not by an item count: it outlasts the timeout on any machine.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .consistency import consistent
from .gates import library_write_lock, running_job, store, wait_for
from .libenv import LibraryEnv
from .servers import gunicorn, web_settings
from .shared import add_many
from .sse_client import EventSource

TIMEOUT = 2  # gunicorn --timeout, seconds
HELD = TIMEOUT + 1.5  # how long past its start the job is held (under beets' 5 s lock timeout)
ITEMS = 40


def run_and_follow(env: LibraryEnv, *options: str) -> tuple[list, EventSource, dict, str]:
    """Start a job, hold it for HELD seconds past its start while a client
    follows its events, then let it finish."""
    web_settings(env)
    add_many(env, ITEMS)
    server = gunicorn(env, *options, "--timeout", str(TIMEOUT))
    try:
        with ThreadPoolExecutor(1) as pool, library_write_lock(env) as gate:
            created = server.post("/api/jobs", json={"op": "process"})
            assert created.status_code == 202, created.text
            job = created.json()["job"]
            source = EventSource(server.url(created.json()["events"]))
            following = pool.submit(lambda: list(source.events()))
            started = running_job(env)["started"]
            wait_for(lambda: time.time() - started >= HELD or following.done(), f"{HELD} s of the job", poll=0.05)
            held = store(env).get(job)
            assert (held["status"], held["current"]) == ("running", 0), "the gate held the job"
            gate.release()
            events = following.result(timeout=120)
        summary = server.get(f"/api/jobs/{job}").json()
    finally:
        server.stop()
    return events, source, summary, server.log()


def assert_complete(events: list, summary: dict) -> None:
    assert [e.id for e in events] == list(range(1, ITEMS + 3)), "every event exactly once, in order"
    assert [e.data["current"] for e in events[1:-1]] == list(range(1, ITEMS + 1))
    assert events[-1].data["status"] == summary["status"] == "completed"
    assert summary["succeeded"] == ITEMS
    assert summary["finished"] - summary["started"] > TIMEOUT + 1, f"the job outlasted --timeout ({TIMEOUT} s)"


def test_sync_workers_with_a_short_timeout(env: LibraryEnv) -> None:
    events, source, summary, log = run_and_follow(env, "-w", "2")
    assert_complete(events, summary)
    assert len(source.connections) > 2, "streams end in time and the client resumes"
    assert all(c.status == 200 for c in source.connections)
    assert "WORKER TIMEOUT" not in log, log[-3000:]
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_gthread_workers_with_a_short_timeout(env: LibraryEnv) -> None:
    """Threads are as scarce as sync workers: responses end in time here too."""
    events, source, summary, log = run_and_follow(env, "-w", "2", "--worker-class", "gthread", "--threads", "4")
    assert_complete(events, summary)
    assert len(source.connections) > 2, "streams end in time and the client resumes"
    assert "WORKER TIMEOUT" not in log


def test_sync_worker_answers_the_waiting_call_in_time(env: LibraryEnv) -> None:
    """Without ?stream the compatible call waits for the end; a sync worker
    cannot wait past its timeout, so it answers 202 with the running job."""
    web_settings(env)
    add_many(env, 5)
    server = gunicorn(env, "-w", "2", "--timeout", str(TIMEOUT))
    try:
        with library_write_lock(env):  # the job cannot end before the answer
            began = time.monotonic()
            response = server.post("/api/process-unmarked")
            assert time.monotonic() - began < TIMEOUT
            assert response.status_code == 202 and response.json()["status"] == "running"
            job = response.json()["job"]
            assert response.headers["Location"] == f"/api/jobs/{job}"
        events = list(EventSource(server.url(f"/api/jobs/{job}/events")).events())
        assert events[-1].data["status"] == "completed" and events[-1].data["succeeded"] == 5
    finally:
        server.stop()
    assert "WORKER TIMEOUT" not in server.log()
