"""The page in a real browser: Debian chromium driven by Playwright, against real servers.

Whatever must be seen while a job runs is seen while the library's write lock
holds the job (tests/gates.py), never because the job happens to be slow.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .consistency import consistent
from .gates import library_write_lock, off_the_library, running_job, store, wait_for, wait_in_flight
from .libenv import BEET, LibraryEnv
from .servers import Server, beet_web, gunicorn, web_settings
from .shared import add_many
from .sse_client import EventSource

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
XSS_NAME = "<img src=x onerror=window.__xss=1>"


def open_page(page: Page, server: Server) -> list[str]:
    """Load /unmarked; return every URL the page requested."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url("/unmarked"))
    return requested


def status(page: Page) -> str:
    return page.locator("[data-job-status]").inner_text()


def start_job(page: Page, op: str) -> None:
    """Click the operation's button and confirm once the plan is complete."""
    page.locator(f"button[data-op={op}]").click()
    confirm = page.locator("[role=dialog][data-confirm]")
    expect(confirm.locator("[data-plan-progress]")).to_contain_text("checked", timeout=60_000)
    expect(confirm.locator("[data-plan-progress]")).not_to_contain_text("so far")
    confirm.locator("button[data-action=confirm]").click()


def wait_until_running(page: Page) -> int:
    """Until the dialog shows a running job; its id. (While the library's write
    lock holds the job the bar stays at 0: items are reported after their
    commit. Built-in assertions only: the page's Content-Security-Policy
    forbids the eval that wait_for_function needs.)"""
    expect(page.locator("[role=dialog]")).to_be_visible()
    expect(page.locator("[data-job-status]")).to_have_text("running", timeout=30_000)
    return int(page.locator("[data-job-id]").inner_text())


@contextmanager
def web_server(env: LibraryEnv, **settings: Any) -> Iterator[Server]:
    """`beet web` with writes allowed and these settings (read at its start)."""
    web_settings(env)
    env.configure(**settings)
    srv = beet_web(env)
    try:
        yield srv
    finally:
        srv.stop()


def test_a_job_runs_to_completion_and_failures_are_shown_as_text(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 40)
    bad = env.add_track(f"{XSS_NAME}.mp3", {"title": XSS_NAME, "artist": "Evil"})
    os.remove(bad.path)
    requested = open_page(page, server)
    expect(page.locator("[data-count=process]")).to_have_text("41")
    expect(page.locator("[data-count=rename]")).to_have_text("41")

    dialog = page.locator("[role=dialog]")
    with library_write_lock(env):  # the job runs and cannot end while the dialog is checked
        start_job(page, "process")
        wait_until_running(page)
        expect(dialog.locator("button[data-action=cancel]")).to_be_visible()
        expect(page.locator("[data-job-current]")).to_contain_text(" / 41")
        expect(dialog.locator("button[data-action=close]")).to_be_hidden()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        dialog.screenshot(path=str(SCREENSHOTS / "dialog-running.png"))

    expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
    expect(page.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("[data-job-current]")).to_have_text("41 / 41")
    expect(page.locator("[data-job-succeeded]")).to_have_text("40")
    expect(page.locator("[data-job-failed]")).to_have_text("1")
    failure = page.locator("[data-job-errors] li")
    expect(failure).to_have_count(1)
    expect(failure.locator(".reason")).to_have_text("The file is missing.")
    expect(failure.locator(".path")).to_have_text(f"{env.incoming}/{XSS_NAME}.mp3")
    expect(page.locator("[data-job-outcome]")).to_have_text("Completed with 1 failure: 40 succeeded, 1 failed.")
    assert page.evaluate("window.__xss") is None, "a tag's markup must never run"
    assert dialog.locator("img").count() == 0
    dialog.screenshot(path=str(SCREENSHOTS / "dialog-finished.png"))

    close = page.locator("button[data-action=close]")
    expect(close).to_be_focused()
    close.click()
    expect(dialog).to_be_hidden()
    expect(page.locator("[data-count=process]")).to_have_text("1")
    assert all(url.startswith(server.base) for url in requested), "nothing from outside: works offline"


def test_the_page_forbids_foreign_scripts_and_framing(env: LibraryEnv, server: Server, page: Page) -> None:
    response = page.goto(server.url("/unmarked"))
    headers = response.headers
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    blocked = page.evaluate("""() => new Promise((resolve) => {
        document.addEventListener("securitypolicyviolation", (e) => resolve(e.blockedURI), {once: true});
        const s = document.createElement("script");
        s.src = "http://203.0.113.1/evil.js";
        document.head.append(s);
    })""")
    assert blocked.startswith("http://203.0.113.1")


def test_cancel_really_cancels(env: LibraryEnv, page: Page) -> None:
    """The job is held at its first commit, provably at work on an item, when
    the cancel is clicked: it stops after that batch, whatever the machine."""
    batch, total = 5, 20
    add_many(env, total)
    with web_server(env, unmarked={"batch_size": batch}) as server:
        open_page(page, server)
        with library_write_lock(env):
            start_job(page, "normalize")
            job = wait_until_running(page)
            wait_in_flight(env)  # it has journaled an item's tag write: that item gets done
            page.locator("button[data-action=cancel]").click()
            wait_for(lambda: store(env).get(job)["cancel_requested"], "the cancel request")
            expect(page.locator("[data-job-status]")).to_have_text("running")
        expect(page.locator("[data-job-status]")).to_have_text("cancelled", timeout=30_000)
        done = int(page.locator("[data-job-succeeded]").inner_text())
        events = list(EventSource(server.url(f"/api/jobs/{job}/events")).events())
    assert 0 < done <= batch < total, "stopped after the batch under way"
    assert events[-1].data["status"] == "cancelled" and events[-1].data["succeeded"] == done
    reported = sorted(e.data["item_id"] for e in events if e.type == "item" and e.data["success"])
    assert env.beet_ids("^unmarked:normalize") == reported, "markers only for the items done"
    consistent(env, env.incoming, env.lib_path)


def test_reload_and_a_second_tab_reattach(env: LibraryEnv, server: Server, page: Page, browser: Browser) -> None:
    add_many(env, 20)
    open_page(page, server)
    # The job is still running when the tabs attach: held by the library's
    # lock until it is at work, then by the job store's, so that the loading
    # tabs can read the library (see gates.py).
    with library_write_lock(env) as gate:
        start_job(page, "process")
        job = str(wait_until_running(page))
        wait_in_flight(env)
        with off_the_library(env, gate):
            other = page.context.new_page()  # a second tab
            other.goto(server.url("/unmarked"))
            expect(other.locator("[role=dialog]")).to_be_visible()
            expect(other.locator("[data-job-id]")).to_have_text(job)

            page.reload()
            expect(page.locator("[role=dialog]")).to_be_visible()
            expect(page.locator("[data-job-id]")).to_have_text(job)
            for tab in (page, other):
                expect(tab.locator("[data-job-status]")).to_have_text("running")
                expect(tab.locator("[data-job-current]")).to_have_text("0 / 20")
    for tab in (page, other):
        expect(tab.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
        expect(tab.locator("[data-job-current]")).to_have_text("20 / 20")
        expect(tab.locator("[data-job-succeeded]")).to_have_text("20")


def test_a_job_started_from_the_cli_is_shown(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 20)
    try:
        with library_write_lock(env):  # the CLI's job is at work, and stays so, when the page opens
            cli = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def alive() -> None:
                assert cli.poll() is None, f"the CLI exited {cli.returncode}"

            job = running_job(env, alive=alive)
            wait_in_flight(env, alive=alive)
            open_page(page, server)
            expect(page.locator("[role=dialog]")).to_be_visible()
            expect(page.locator("[data-job-id]")).to_have_text(str(job["job"]))
            expect(page.locator("[data-job-origin]")).to_contain_text("started from cli")
            expect(page.locator("[data-job-status]")).to_have_text("running")
        expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
        expect(page.locator("[data-job-succeeded]")).to_have_text("20")
    finally:
        assert cli.wait(timeout=60) == 0


def test_read_only_server_disables_buttons_and_says_why(env: LibraryEnv, page: Page) -> None:
    add_many(env, 3)
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        open_page(page, server)
        expect(page.locator("[data-count=normalize]")).to_have_text("3")
        for op in ("process", "rename", "normalize"):
            expect(page.locator(f"button[data-op={op}]")).to_be_disabled()
        note = page.locator("#readonly-note")
        expect(note).to_be_visible()
        expect(note).to_contain_text("readonly: no")
        assert page.locator("button[data-op=process]").get_attribute("aria-describedby") == "readonly-note"
    finally:
        server.stop()


def test_keyboard_only_and_the_query_box(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 4, artist="Alpha")
    add_many(env, 2, artist="Beta")
    open_page(page, server)
    expect(page.locator("[data-count=process]")).to_have_text("6")
    page.locator("input[name=query]").fill("artist:Beta")
    page.keyboard.press("Enter")
    expect(page.locator("[data-count=process]")).to_have_text("2")
    page.locator("input[name=query]").fill("unmarked:maybe")
    page.keyboard.press("Enter")
    expect(page.locator("[data-query-error]")).to_contain_text("invalid query")
    page.locator("input[name=query]").fill("artist:Beta")
    page.keyboard.press("Enter")
    expect(page.locator("[data-count=process]")).to_have_text("2")

    button = page.locator("button[data-op=rename]")
    button.focus()
    page.keyboard.press("Enter")
    confirm = page.locator("[role=dialog][data-confirm]")
    expect(confirm.locator("[data-plan=moves]")).to_have_text("2")
    page.keyboard.press("Tab")  # from "Cancel, change nothing" to the confirmation
    expect(confirm.locator("button[data-action=confirm]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=30_000)
    expect(page.locator("[data-job-current]")).to_have_text("2 / 2")
    expect(page.locator("button[data-action=close]")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("[role=dialog]")).to_be_hidden()
    expect(button).to_be_focused()
    assert env.beet_ids("^unmarked:rename") == env.ids("artist:Beta")


def test_beets_own_page_links_here_and_back(env: LibraryEnv, server: Server, page: Page) -> None:
    page.goto(server.url("/"))
    link = page.locator("a[href=unmarked]")
    expect(link).to_be_visible()
    link.click()
    expect(page).to_have_url(server.url("/unmarked"))
    page.locator("a", has_text="Back to the beets web interface").click()
    expect(page).to_have_url(server.url("/"))


def test_the_tab_stays_responsive_during_a_big_job(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 2500)
    open_page(page, server)
    with library_write_lock(env):  # measuring starts before the first item event
        start_job(page, "rename")
        wait_until_running(page)
    worst, samples = 0.0, 0
    while samples == 0 or status(page) != "completed":
        began = time.monotonic()
        page.evaluate("1 + 1")  # a round trip through the page's main thread
        worst = max(worst, time.monotonic() - began)
        samples += 1
        time.sleep(0.05)
    assert worst < 0.5, f"the page's main thread was blocked for {worst:.2f} s"
    expect(page.locator("[data-job-current]")).to_have_text("2,500 / 2,500")  # grouped thousands


def test_under_gunicorn_sync_workers_the_page_resumes_by_itself(env: LibraryEnv, page: Page) -> None:
    web_settings(env)
    add_many(env, 30)
    server = gunicorn(env, "-w", "2", "--timeout", "2")
    try:
        requested = open_page(page, server)

        def streams() -> int:
            return sum("/events" in url for url in requested)

        with library_write_lock(env):  # the job runs on while the page's streams end and resume
            start_job(page, "process")
            wait_until_running(page)
            deadline = time.monotonic() + 20
            while streams() < 3:
                assert time.monotonic() < deadline, "the page did not resume its event stream"
                page.wait_for_timeout(50)  # lets Playwright deliver the page's request events
        expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=90_000)
        expect(page.locator("[data-job-current]")).to_have_text("30 / 30")
        expect(page.locator("[data-job-succeeded]")).to_have_text("30")
        assert streams() >= 3, "the page resumed its stream by itself"
    finally:
        server.stop()
    assert "WORKER TIMEOUT" not in server.log()
