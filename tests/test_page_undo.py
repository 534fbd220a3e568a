"""Undo a job from the page: its plan first (GET /api/jobs/ID/undo), then the
undo job followed like any other. A real `beet web`, real files, Debian
chromium driven by Playwright with the keyboard alone (Tab, Enter, Space,
Escape), axe-core on the confirmation; the files, tags and markers are
compared with tests/test_undo.py's ``state``."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from .audio import MESSY_TRACKS, make_track
from .libenv import LibraryEnv, audio_files
from .servers import Server, beet_web, web_settings
from .test_undo import last_job, library, state
from .test_web_api import wait_status

pytestmark = pytest.mark.browser


def processed(server: Server, count: int) -> int:
    """The library's tracks, processed by a web job; its id."""
    response = server.post("/api/jobs", json={"op": "process"})
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert wait_status(server, job, {"completed"})["succeeded"] == count
    return job


def record(server: Server, job: int) -> list[dict]:
    return server.get(f"/api/jobs/{job}/items", params={"limit": 1000}).json()["items"]


# --- the plan over HTTP ------------------------------------------------------------------


def test_the_undo_plan_counts_what_would_go_back_and_what_would_fail(env: LibraryEnv, server: Server) -> None:
    library(env, 8)  # messy tracks, each with a tag the library does not hold
    before = state(env)
    job = processed(server, 8)
    done = record(server, job)
    moved = sum(item["dest"] != item["file"] for item in done)
    retagged = sum(bool(item["changes"]) for item in done)
    assert moved and retagged
    plan = server.get(f"/api/jobs/{job}/undo").json()
    assert plan == {**plan, "job": job, "count": 8, "moves": moved, "retags": retagged, "unchanged": 0,
                    "failures": {"changed": 0, "destination_taken": 0, "missing": 0}, "complete": True}

    # One edit after the job, one file put where another item goes back, one file gone.
    env.beet("modify", "-y", "-w", "id:3", "title=Edited Later")
    squatter = Path(os.fsdecode(before[1][0]))
    make_track(squatter, MESSY_TRACKS[0])
    gone = Path(os.fsdecode(env.item(5).path))
    gone.unlink()
    now = snapshot(env)
    plan = server.get(f"/api/jobs/{job}/undo").json()
    assert plan["failures"] == {"changed": 1, "destination_taken": 1, "missing": 1}, plan
    errors = {entry["id"]: entry["error"] for entry in plan["sample"] if entry["error"]}
    assert f"changed since job {job}: Edited Later" in errors[3], errors
    assert "cannot move it back to" in errors[1] and str(squatter) in errors[1], errors
    assert "file not found" in errors[5], errors
    assert snapshot(env) == now, "the plan changes nothing"

    # Undone: the items it put back are as before the job now, so a second look finds them unchanged.
    response = server.post(f"/api/jobs/{job}/undo")
    assert response.status_code == 202, response.text
    wait_status(server, response.json()["job"], {"completed"})
    plan = server.get(f"/api/jobs/{job}/undo").json()
    assert plan["unchanged"] == 5 and plan["moves"] == plan["retags"] == 0, plan
    assert plan["failures"] == {"changed": 1, "destination_taken": 1, "missing": 1}, plan

    assert server.get("/api/jobs/999/undo").status_code == 404
    assert server.get("/api/jobs/x/undo").status_code == 404


def snapshot(env: LibraryEnv) -> tuple[list, dict[Path, bytes]]:
    """The library's item rows and attributes, and every audio file's bytes: what a plan must not change."""
    with sqlite3.connect(env.settings["library"]) as conn:
        rows = [*conn.execute("SELECT * FROM items ORDER BY id"),
                *conn.execute("SELECT * FROM item_attributes ORDER BY id")]
    return rows, {path: path.read_bytes() for path in audio_files(env.temp_path)}


def test_the_undo_plan_is_allowed_read_only_and_says_why_a_job_cannot_be_undone(env: LibraryEnv) -> None:
    library(env, 4)
    env.beet("rename-unmarked")
    job = last_job(env)
    env.beet("normalize-unmarked")
    compacted = last_job(env)
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:  # as ``keep_within`` leaves it
        conn.execute("UPDATE jobs SET compacted = 1 WHERE id = ?", (compacted,))
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        plan = server.get(f"/api/jobs/{job}/undo")
        assert plan.status_code == 200 and plan.json()["moves"] == 4, plan.text
        assert server.post(f"/api/jobs/{job}/undo").status_code == 403
        refused = server.get(f"/api/jobs/{compacted}/undo")
        assert refused.status_code == 400 and "can no longer be undone" in refused.json()["error"], refused.text
    finally:
        server.stop()
