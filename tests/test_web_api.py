"""The HTTP API and SSE over a real loopback socket (`beet web` as a subprocess)."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest
import requests

from .consistency import consistent
from .gates import library_write_lock, store, wait_in_flight
from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import add_many
from .sse_client import EventSource
from .test_operations import hold_library

EXTS = ["flac", "ogg", "mp3"]


def wait_status(server: Server, job: int, statuses: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary = server.get(f"/api/jobs/{job}").json()
        if summary["status"] in statuses:
            return summary
        time.sleep(0.05)
    raise AssertionError(f"job {job} still {summary['status']}")


def marked_ids(env: LibraryEnv, marker: str) -> set[int]:
    with sqlite3.connect(env.settings["library"]) as conn:
        return {row[0] for row in conn.execute("SELECT entity_id FROM item_attributes WHERE key = ?", (marker,))}


def test_stream_end_to_end(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 30)
    source = EventSource(server.url("/api/process-unmarked?stream=true"), method="POST", body={})
    events = list(source.events())

    first = source.connections[0]
    assert first.status == 200
    assert first.headers["Content-Type"].startswith("text/event-stream")
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.headers["X-Accel-Buffering"] == "no"
    assert [e.id for e in events] == list(range(1, 33)), "ids 1, 2, 3 ... without gaps"
    assert all(e.type == e.data["type"] for e in events)
    start, items, done = events[0], events[1:-1], events[-1]
    assert start.data == {"type": "start", "job": start.data["job"], "op": "process", "total": 30}
    assert [e.data["current"] for e in items] == list(range(1, 31))
    assert sorted(e.data["item_id"] for e in items) == sorted(ids)
    sample = items[0].data
    assert sample["success"] and sample["error"] is None and sample["total"] == 30
    assert sample["changes"]["title"][1].startswith("Song ") and sample["dest"] != sample["file"]
    assert os.path.isabs(sample["dest"]) and sample["dest"].startswith(str(env.lib_path))
    assert done.data["done"] is True and done.data["status"] == "completed"
    assert (done.data["succeeded"], done.data["failed"], done.data["results"]) == (30, 0, [])
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_without_stream_the_summary_comes_back(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 6)
    gone = env.item(ids[2])
    os.remove(gone.path)
    response = server.post("/api/rename-unmarked", json={"query": "artist:Artist"})
    assert response.status_code == 200
    summary = response.json()
    for key in ("job", "op", "query", "status", "total", "current", "succeeded", "failed", "skipped",
                "created", "started", "finished", "errors"):
        assert key in summary
    assert (summary["status"], summary["total"], summary["succeeded"], summary["failed"]) == ("completed", 6, 5, 1)
    assert summary["errors"] == [{"item_id": ids[2], "file": os.fsdecode(gone.path),
                                  "error": f"file not found: {os.fsdecode(gone.path)}"}]
    assert env.beet_ids("unmarked:rename") == [ids[2]]


def test_disconnect_and_resume_with_last_event_id(env: LibraryEnv, server: Server) -> None:
    add_many(env, 150)
    created = server.post("/api/jobs", json={"op": "process"})
    assert created.status_code == 202
    job = created.json()
    assert job["total"] == 150 and job["events"] == f"/api/jobs/{job['job']}/events"

    source = EventSource(server.url(job["events"]))
    seen = []
    for event in source.events():
        seen.append(event)
        if event.id == 10:
            break  # the client goes away mid-response
    assert source.last_event_id == 10
    seen += list(source.events())  # reconnects with Last-Event-ID: 10
    assert [e.id for e in seen] == list(range(1, 153)), "nothing lost, nothing repeated"
    assert seen[-1].data["status"] == "completed"
    assert all(c.status == 200 for c in source.connections)

    # A reconnect after `done` gets 204: EventSource stops instead of looping.
    again = requests.get(server.url(job["events"]), headers={"Last-Event-ID": "152"}, timeout=10)
    assert again.status_code == 204
    # A page that re-attaches from the summary uses ?after=
    tail = list(EventSource(server.url(job["events"] + "?after=150")).events())
    assert [e.id for e in tail] == [151, 152]


def test_job_goes_on_when_the_client_leaves(env: LibraryEnv) -> None:
    """The client leaves while the job is held at its first commit (by the
    library's write lock): the job still has all its batches to do."""
    web_settings(env)
    env.configure(unmarked={"batch_size": 2})
    add_many(env, 20)
    server = beet_web(env)
    try:
        with library_write_lock(env):
            source = EventSource(server.url("/api/normalize-unmarked?stream=true"), method="POST", body={})
            start = next(source.one_connection())  # read the start event, then drop the connection (reload)
            job = start.data["job"]
            assert store(env).get(job)["current"] == 0, "the client left before any item was reported"
        summary = wait_status(server, job, {"completed"})
        assert summary["current"] == summary["succeeded"] == 20
        assert server.get("/api/jobs").json()["jobs"][0]["job"] == job
    finally:
        server.stop()
    assert env.beet_ids("unmarked:normalize") == []


def test_cancel_stops_before_the_next_item(env: LibraryEnv) -> None:
    """The cancel comes when every item of the first batch has been started
    (the library's write lock holds the batch's commit): that batch is done,
    and no item after it, on any machine."""
    batch, total = 5, 20
    web_settings(env)
    env.configure(unmarked={"batch_size": batch, "batch_seconds": 3600})  # batches bounded by count only
    add_many(env, total)
    server = beet_web(env)
    try:
        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
            wait_in_flight(env, batch)
            cancelled = server.post(f"/api/jobs/{job}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
            assert store(env).get(job)["current"] == 0, "held: nothing committed yet"
        events = list(EventSource(server.url(f"/api/jobs/{job}/events")).events())
        summary = server.get(f"/api/jobs/{job}").json()
    finally:
        server.stop()
    done = events[-1].data
    assert done["status"] == "cancelled"
    assert 0 < done["succeeded"] < total
    assert done["succeeded"] == batch, "the batch under way is finished, no item after it is started"
    reported = {e.data["item_id"] for e in events if e.type == "item" and e.data["success"]}
    assert len(reported) == done["succeeded"]
    assert marked_ids(env, "renamed") == reported == marked_ids(env, "normalized"), "markers only for items done"
    assert summary["status"] == "cancelled" and summary["current"] == len(events) - 2
    consistent(env, env.incoming, env.lib_path)


def test_one_job_per_library(env: LibraryEnv, server: Server) -> None:
    add_many(env, 30)
    holder = sqlite3.connect(env.settings["library"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the first job waits at its commit: running, on any machine
    try:
        first = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        second = server.post("/api/jobs", json={"op": "rename"})
        assert second.status_code == 409
        assert second.json()["job"] == first and f"job {first} (process, from web" in second.json()["error"]
        cli = env.beet("rename-unmarked", check=False)
        assert cli.returncode == 1 and f"job {first} (process, from web" in cli.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    wait_status(server, first, {"completed"})
    # and the other way round: a CLI job (here: a live claim) blocks the web
    held = hold_library(env)
    blocked = server.post("/api/rename-unmarked")
    assert blocked.status_code == 409 and blocked.json()["job"] == held.id
    held.close()


def test_paths_are_absolute_in_request_threads(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 5, artist="Alpha") + add_many(env, 3, artist="Beta")
    env.beet("mark", "--op", "rename", "artist:Beta")
    listing = server.get("/api/unmarked", params={"op": "rename"}).json()
    assert listing["count"] == 5 and listing["op"] == "rename"
    assert {i["id"] for i in listing["items"]} == set(ids[:5])
    assert all(os.path.isabs(i["path"]) and os.path.exists(i["path"]) for i in listing["items"])
    page = server.get("/api/unmarked", params={"op": "process", "limit": 3, "offset": 6}).json()
    assert page["count"] == 8 and [i["id"] for i in page["items"]] == ids[6:8]
    narrowed = server.get("/api/unmarked", params={"query": "artist:Beta"}).json()
    assert narrowed["count"] == 3 and narrowed["items"][0]["artist"] == "Beta"


def test_readonly_server_refuses_changes(env: LibraryEnv) -> None:
    add_many(env, 3)
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        for path in ("/api/jobs", "/api/process-unmarked", "/api/rename-unmarked?stream=true", "/api/jobs/1/cancel"):
            response = server.post(path, json={"op": "process"} if path == "/api/jobs" else None)
            assert response.status_code == 403, path
            assert "read-only" in response.json()["error"]
        assert server.get("/api/jobs").json() == {"jobs": []}
        assert server.get("/api/unmarked").json()["count"] == 3
    finally:
        server.stop()
    assert env.beet_ids("unmarked:true") == env.ids()


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_site_posts_are_refused(env: LibraryEnv, server: Server, headers: dict[str, str]) -> None:
    add_many(env, 2)
    response = server.post("/api/jobs", json={"op": "process"}, headers=headers)
    assert response.status_code == 403
    assert "cross-site request refused" in response.json()["error"]
    assert server.get("/api/jobs").json() == {"jobs": []}
    same = server.post("/api/jobs", json={"op": "process"},
                       headers={"Origin": server.base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 202


@pytest.mark.parametrize(("body", "message"), [
    ("{", "request body is not valid JSON"),
    ("[]", "request body must be a JSON object, not list"),
    ('"process"', "must be a JSON object, not str"),
    ("{}", "missing field(s): op"),
    ('{"op": "tidy"}', "unknown operation 'tidy'"),
    ('{"op": 5}', "field 'op' must be a str, not int"),
    ('{"op": "process", "force": "yes"}', "field 'force' must be a bool, not str"),
    ('{"op": "process", "query": ["a"]}', "field 'query' must be a str, not list"),
    ('{"op": "process", "limit": 3}', "unknown field(s) limit"),
    ('{"op": "process", "query": "unmarked:maybe"}', "invalid query"),
    ('{"op": "process", "query": "\\"unclosed"}', "invalid query"),
    (b"\xff\xfe", "not valid JSON"),
])
def test_malformed_job_requests(env: LibraryEnv, server: Server, body: str | bytes, message: str) -> None:
    add_many(env, 2)
    response = server.post("/api/jobs", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert server.get("/api/jobs").json() == {"jobs": []}, "nothing was started"


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/unmarked?op=tidy", 400, "unknown operation"),
    ("/api/unmarked?limit=abc", 400, "limit must be a whole number"),
    ("/api/unmarked?limit=0", 400, "limit must be from 1 to 1000"),
    ("/api/unmarked?offset=-1", 400, "offset must be a whole number"),
    ("/api/unmarked?query=unmarked:maybe", 400, "invalid query"),
    ("/api/jobs/999", 404, "no job '999'"),
    ("/api/jobs/abc", 404, "no job 'abc'"),
    ("/api/jobs/999/events", 404, "no job"),
])
def test_bad_reads(env: LibraryEnv, server: Server, path: str, status: int, message: str) -> None:
    response = server.get(path)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_bad_ids_and_names_on_posts(env: LibraryEnv, server: Server) -> None:
    assert server.post("/api/jobs/12/cancel").status_code == 404
    unknown = server.post("/api/tidy-unmarked")
    assert unknown.status_code == 404 and "no operation 'tidy'" in unknown.json()["error"]
    add_many(env, 2)
    job = server.post("/api/jobs", json={"op": "rename"}).json()["job"]
    wait_status(server, job, {"completed"})
    bad = server.get(f"/api/jobs/{job}/events", headers={"Last-Event-ID": "x1"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


def test_cancel_works_across_the_handover_to_a_restarted_server(env: LibraryEnv) -> None:
    """kill -9 of `beet web` mid-job; while no server runs, the job is cancelled
    from a terminal; the restarted server adopts the job (same id), repairs what
    the dead one left, sees the cancel and ends it: nothing marked, files consistent."""
    web_settings(env)
    env.configure(unmarked={"batch_size": 5})
    add_many(env, 40)
    server = beet_web(env)
    with library_write_lock(env):  # the job waits at its first commit: provably mid-run
        job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        wait_in_flight(env, 1)
        server.kill()  # kill -9 of the server mid-job
        server.stop()
    said = env.beet("unmarked-jobs", "--cancel", str(job)).stdout
    assert "cancel requested" in said
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, job, {"cancelled", "completed", "failed"})
        events = list(EventSource(restarted.url(f"/api/jobs/{job}/events")).events())
    finally:
        restarted.stop()
    assert summary["status"] == "cancelled" and summary["succeeded"] == 0
    assert summary["resumed"] and f"pid {restarted.proc.pid}" in summary["resumed"][-1]
    assert [(e.id, e.type) for e in events] == [(1, "start"), (2, "done")]
    assert events[-1].data["status"] == "cancelled"
    assert marked_ids(env, "renamed") == marked_ids(env, "normalized") == set()
    consistent(env, env.incoming, env.lib_path)


def test_keep_alive_while_the_job_waits_for_a_locked_library(env: LibraryEnv) -> None:
    """A response that may follow a job for a while (``stream_window``) sends
    keep-alive comments while nothing happens, then ends with ``retry:``."""
    add_many(env, 5)
    web_settings(env)
    env.configure(unmarked={"stream_window": 8})
    server = beet_web(env)
    holder = sqlite3.connect(env.settings["library"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the library's write lock
    try:
        job = server.post("/api/jobs", json={"op": "normalize"}).json()["job"]
        source = EventSource(server.url(f"/api/jobs/{job}/events"))
        first = list(source.one_connection())  # the job retries its commit; the stream stays silent
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    rest = list(source.events())
    assert [e.type for e in first] == ["start"]
    assert source.connections[0].comments[:1] == [": keep-alive"]
    assert source.retry == 1.0, "the response ended with retry: (stream_retry)"
    assert rest[-1].type == "done" and rest[-1].data["status"] == "completed"
    assert rest[-1].data["succeeded"] == 5, "the commit waited for the lock and went through"
    server.stop()
    log = server.log()
    assert "library locked; retrying" in log
    assert json.loads(json.dumps(rest[-1].data))["failed"] == 0
