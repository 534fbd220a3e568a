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
from playwright.sync_api import Locator, Page, expect

from .audio import MESSY_TRACKS, make_track
from .axe import assert_accessible
from .consistency import consistent
from .libenv import LibraryEnv, audio_files
from .servers import Server, beet_web, web_settings
from .test_operations import hold_library
from .test_page import open_page
from .test_page_actions import CONFIRM, jobs, plan_number
from .test_page_tracks import tab_to
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
                    "failures": {"changed": 0, "destination_taken": 0, "missing": 0, "unrecorded": 0},
                    "complete": True}

    # One edit after the job, one file put where another item goes back, one file gone,
    # and one item the record does not describe (as a resumption that reported it leaves it).
    env.beet("modify", "-y", "-w", "id:3", "title=Edited Later")
    squatter = Path(os.fsdecode(before[1][0]))
    make_track(squatter, MESSY_TRACKS[0])
    gone = Path(os.fsdecode(env.item(5).path))
    gone.unlink()
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:
        conn.execute("UPDATE events SET data = json_remove(data, '$.undo') WHERE job = ? AND type = 'item' "
                     "AND json_extract(data, '$.item_id') = 7", (job,))
    now = snapshot(env)
    plan = server.get(f"/api/jobs/{job}/undo").json()
    assert plan["failures"] == {"changed": 1, "destination_taken": 1, "missing": 1, "unrecorded": 1}, plan
    errors = {entry["id"]: entry["error"] for entry in plan["sample"] if entry["error"]}
    assert f"changed since job {job}: Edited Later" in errors[3], errors
    assert "cannot move it back to" in errors[1] and str(squatter) in errors[1], errors
    assert "file not found" in errors[5], errors
    assert f"job {job} did not record what it changed here" in errors[7], errors
    assert snapshot(env) == now, "the plan changes nothing"

    # Undone: the items it put back are as before the job now, so a second look finds them unchanged.
    response = server.post(f"/api/jobs/{job}/undo")
    assert response.status_code == 202, response.text
    wait_status(server, response.json()["job"], {"completed"})
    plan = server.get(f"/api/jobs/{job}/undo").json()
    assert plan["unchanged"] == 4 and plan["moves"] == plan["retags"] == 0, plan
    assert plan["failures"] == {"changed": 1, "destination_taken": 1, "missing": 1, "unrecorded": 1}, plan

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


# --- the page, keyboard only ----------------------------------------------------------------

DIALOG = "[role=dialog][data-job-dialog]"


def open_record(page: Page, job: int) -> Locator:
    """Tab to the job's row in the recent jobs and press Enter: its record opens; its undo button."""
    tab_to(page, page.locator(f"[data-job-row][data-job='{job}'] button"))
    page.keyboard.press("Enter")
    expect(page.locator(DIALOG)).to_be_visible()
    expect(page.locator("[data-job-record]")).to_be_visible()
    return page.locator(f"{DIALOG} button[data-action=undo]")


def wait_for_undo_plan(page: Page) -> None:
    expect(page.locator(f"{CONFIRM} [data-plan-progress]")).to_contain_text("checked against the library",
                                                                            timeout=60_000)


def test_undo_from_the_page_with_the_keyboard_alone(env: LibraryEnv, server: Server, page: Page) -> None:
    library(env, 8)  # messy tracks, half outside the library directory, each with a tag the library does not hold
    before = state(env)
    job = processed(server, 8)
    after = state(env)
    assert after != before
    plan = server.get(f"/api/jobs/{job}/undo").json()
    open_page(page, server)
    undo = open_record(page, job)
    expect(undo).to_have_text(f"Undo job {job}")
    expect(undo).to_be_enabled()
    expect(page.locator("[data-undo-why]")).to_be_hidden()

    # Asked first; Escape and "Cancel, change nothing" both start nothing and give the record back.
    confirm = page.locator(CONFIRM)
    for leave in ("Escape", "dismiss"):
        tab_to(page, undo)
        page.keyboard.press("Space")
        expect(confirm).to_be_visible()
        expect(confirm.locator("[data-confirm-title]")).to_have_text(f"Undo job {job} (process)?")
        wait_for_undo_plan(page)
        if leave == "Escape":
            page.keyboard.press("Escape")
        else:
            expect(confirm.locator("button[data-action=dismiss]")).to_be_focused()
            page.keyboard.press("Enter")
        expect(confirm).to_be_hidden()
        expect(page.locator(DIALOG)).to_be_visible()
        expect(undo).to_be_focused()
        assert [summary["job"] for summary in jobs(server)] == [job], "nothing started"
        assert state(env) == after

    page.keyboard.press("Enter")  # the undo button has the focus
    wait_for_undo_plan(page)
    expect(plan_number(page, "moves")).to_have_text(str(plan["moves"]))
    expect(plan_number(page, "retags")).to_have_text(str(plan["retags"]))
    expect(plan_number(page, "failures")).to_have_text("0")
    expect(plan_number(page, "unchanged")).to_have_text("0")
    assert plan["moves"] > 0 and plan["retags"] > 0, plan
    expect(confirm.locator("[data-plan-progress]")).to_contain_text("All 8 tracks job 1 changed checked")
    assert_accessible(page, "the undo's confirmation")
    for key in ["Tab"] * 4 + ["Shift+Tab"] * 4:  # focus stays in the confirmation
        page.keyboard.press(key)
        assert confirm.evaluate("d => d.contains(document.activeElement)"), f"focus left it after {key}"
    tab_to(page, confirm.locator("button[data-action=confirm]"))
    expect(confirm.locator("button[data-action=confirm]")).to_have_text(f"Undo job {job}")
    page.keyboard.press("Enter")

    expect(confirm).to_be_hidden()
    outcome = page.locator("[data-job-outcome]")
    expect(outcome).to_have_text("Completed: 8 succeeded, 0 failed.", timeout=60_000)
    undone = jobs(server)[0]
    assert (undone["op"], undone["undoes"], undone["origin"]) == ("undo", job, "web"), undone
    expect(page.locator("[data-job-id]")).to_have_text(str(undone["job"]))
    expect(page.locator("[data-job-op]")).to_have_text(f"undo of job {job}")
    expect(page.locator("[data-job-current]")).to_have_text("8 / 8")
    expect(page.locator("[data-progress]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("[data-action=close]")).to_be_focused()
    assert_accessible(page, "an undo finished")
    assert state(env) == before, "every file, tag, field and marker as before the job"
    consistent(env)

    page.keyboard.press("Escape")
    expect(page.locator(DIALOG)).to_be_hidden()
    operation = page.locator(f"[data-job-row][data-job='{undone['job']}'] td[data-label=Operation]")
    expect(operation).to_have_text(f"undo of job {job}")
    redo = open_record(page, undone["job"])  # an undo can be undone in turn
    expect(redo).to_have_text(f"Undo job {undone['job']} (redo job {job})")
    expect(redo).to_be_enabled()


def test_the_page_shows_an_undo_that_finds_changes_and_a_refusal_in_words(
        env: LibraryEnv, server: Server, page: Page) -> None:
    library(env, 6)
    job = processed(server, 6)
    env.beet("modify", "-y", "-w", "id:3", "title=Edited Later")  # an edit after the job: kept
    edited = state(env)[3]
    open_page(page, server)
    undo = open_record(page, job)
    tab_to(page, undo)
    page.keyboard.press("Enter")
    wait_for_undo_plan(page)
    expect(plan_number(page, "failures")).to_have_text("1")
    confirm = page.locator(CONFIRM)
    expect(confirm.locator("[data-cause=changed]")).to_have_text("1 track changed since the job (left as it is)")
    expect(confirm.locator("[data-plan-sample] [data-plan-item='3']")).to_contain_text("Edited Later")

    held = hold_library(env)  # another job holds the library meanwhile: the undo is refused, in words
    try:
        tab_to(page, confirm.locator("button[data-action=confirm]"))
        page.keyboard.press("Enter")
        refusal = page.locator("[data-undo-error]")
        expect(refusal).to_contain_text(f"Job {job} was not undone: job {held.id} (rename, from test")
        expect(refusal).to_contain_text("Undo it once that job has ended.")
        expect(undo).to_be_focused()
        assert_accessible(page, "an undo refused")
    finally:
        held.close()

    page.keyboard.press("Enter")
    wait_for_undo_plan(page)
    tab_to(page, confirm.locator("button[data-action=confirm]"))
    page.keyboard.press("Enter")
    expect(page.locator("[data-job-outcome]")).to_have_text("Completed with 1 failure: 5 succeeded, 1 failed.",
                                                            timeout=60_000)
    failure = page.locator("[data-job-errors] li[data-item='3']")
    expect(failure).to_contain_text(f"changed since job {job}: Edited Later")
    assert state(env)[3] == edited, "the later edit is untouched"


def test_the_undo_button_says_why_it_is_disabled(env: LibraryEnv, page: Page) -> None:
    library(env, 4)
    env.beet("rename-unmarked")
    compacted = last_job(env)
    env.beet("normalize-unmarked")
    job = last_job(env)
    with sqlite3.connect(env.temp_path / "library.db-unmarked.db") as conn:  # as ``keep_within`` leaves it
        conn.execute("UPDATE jobs SET compacted = 1 WHERE id = ?", (compacted,))
    for readonly in (False, True):
        web_settings(env, readonly=readonly)
        server = beet_web(env)
        try:
            open_page(page, server)
            why = page.locator("[data-undo-why]")
            undo = open_record(page, compacted)
            expect(undo).to_be_disabled()
            expect(why).to_be_visible()
            expect(why).to_have_text(
                "This server is read-only, so no job can be undone here." if readonly else
                f"Job {compacted} can no longer be undone: its record was compacted to its failed tracks "
                "to keep the job store within job_history_mb.")
            expect(undo).to_have_attribute("aria-describedby", "undo-why")
            assert_accessible(page, "an undo disabled")
            page.keyboard.press("Escape")
            undo = open_record(page, job)
            if readonly:
                expect(undo).to_be_disabled()
                expect(why).to_have_text("This server is read-only, so no job can be undone here.")
            else:
                expect(undo).to_be_enabled()
                expect(why).to_be_hidden()
            page.keyboard.press("Escape")
        finally:
            server.stop()
