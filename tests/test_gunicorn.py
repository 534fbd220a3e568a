"""Under real gunicorn: a job far longer than --timeout, sync and gthread workers."""

from __future__ import annotations

import time

from .consistency import consistent
from .libenv import LibraryEnv
from .servers import gunicorn, web_settings
from .sse_client import EventSource
from .test_web_api import add_many


def run_and_follow(env: LibraryEnv, *options: str) -> tuple[list, EventSource, dict, str]:
    web_settings(env)
    add_many(env, 700)
    server = gunicorn(env, *options)
    try:
        created = server.post("/api/jobs", json={"op": "process"})
        assert created.status_code == 202, created.text
        source = EventSource(server.url(created.json()["events"]))
        events = list(source.events())
        summary = server.get(f"/api/jobs/{created.json()['job']}").json()
    finally:
        server.stop()
    return events, source, summary, server.log()


def assert_complete(events: list, summary: dict) -> None:
    assert [e.id for e in events] == list(range(1, 703)), "every event exactly once, in order"
    assert [e.data["current"] for e in events[1:-1]] == list(range(1, 701))
    assert events[-1].data["status"] == summary["status"] == "completed"
    assert summary["succeeded"] == 700


def test_sync_workers_with_a_short_timeout(env: LibraryEnv) -> None:
    events, source, summary, log = run_and_follow(env, "-w", "2", "--timeout", "2")
    assert_complete(events, summary)
    assert summary["finished"] - summary["started"] > 3, "the job outlasted --timeout (2 s)"
    assert len(source.connections) > 2, "streams end in time and the client resumes"
    assert all(c.status == 200 for c in source.connections)
    assert "WORKER TIMEOUT" not in log, log[-3000:]
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_gthread_workers_stream_in_one_response(env: LibraryEnv) -> None:
    events, source, summary, log = run_and_follow(
        env, "-w", "2", "--worker-class", "gthread", "--threads", "4", "--timeout", "2")
    assert_complete(events, summary)
    assert len(source.connections) == 1
    assert "WORKER TIMEOUT" not in log


def test_sync_worker_answers_the_waiting_call_in_time(env: LibraryEnv) -> None:
    """Without ?stream the compatible call waits for the end; a sync worker
    cannot wait past its timeout, so it answers 202 with the running job."""
    web_settings(env)
    add_many(env, 500)
    server = gunicorn(env, "-w", "2", "--timeout", "2")
    try:
        began = time.monotonic()
        response = server.post("/api/process-unmarked")
        assert time.monotonic() - began < 2
        assert response.status_code == 202 and response.json()["status"] == "running"
        job = response.json()["job"]
        assert response.headers["Location"] == f"/api/jobs/{job}"
        events = list(EventSource(server.url(f"/api/jobs/{job}/events")).events())
        assert events[-1].data["status"] == "completed"
    finally:
        server.stop()
    assert "WORKER TIMEOUT" not in server.log()
