"""The page in a real browser: Debian chromium driven by Playwright, against real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from beetsplug.unmarked.jobs import JobStore, store_path

from .libenv import BEET, LibraryEnv
from .servers import Server, beet_web, gunicorn, web_settings
from .test_web_api import add_many

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
XSS_NAME = "<img src=x onerror=window.__xss=1>"
# The flags a sandboxed machine with a closed network needs (no background
# connections, no sandbox as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), "Debian chromium is required (apt-get install chromium)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    yield context.new_page()
    context.close()


def open_page(page: Page, server: Server) -> list[str]:
    """Load /unmarked; return every URL the page requested."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url("/unmarked"))
    return requested


def status(page: Page) -> str:
    return page.locator("[data-job-status]").inner_text()


def wait_until_running(page: Page) -> None:
    """Until the bar has moved. (Built-in assertions only: the page's
    Content-Security-Policy forbids the eval that wait_for_function needs.)"""
    expect(page.locator("[role=dialog]")).to_be_visible()
    expect(page.locator("[role=progressbar]")).not_to_have_attribute("aria-valuenow", "0", timeout=30_000)


def test_a_job_runs_to_completion_and_failures_are_shown_as_text(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 600)
    bad = env.add_track(f"{XSS_NAME}.mp3", {"title": XSS_NAME, "artist": "Evil"})
    os.remove(bad.path)
    requested = open_page(page, server)
    expect(page.locator("[data-count=process]")).to_have_text("601")
    expect(page.locator("[data-count=rename]")).to_have_text("601")

    page.locator("button[data-op=process]").click()
    wait_until_running(page)
    dialog = page.locator("[role=dialog]")
    expect(dialog.locator("button[data-action=cancel]")).to_be_visible()
    expect(page.locator("[data-job-current]")).to_contain_text(" / 601")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    dialog.screenshot(path=str(SCREENSHOTS / "dialog-running.png"))

    expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
    expect(page.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("[data-job-current]")).to_have_text("601 / 601")
    expect(page.locator("[data-job-succeeded]")).to_have_text("600")
    expect(page.locator("[data-job-failed]")).to_have_text("1")
    failure = page.locator("[data-job-errors] li")
    expect(failure).to_have_count(1)
    expect(failure).to_contain_text(f"file not found: {env.incoming}/{XSS_NAME}.mp3")
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


def test_cancel_really_cancels(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 600)
    open_page(page, server)
    page.locator("button[data-op=normalize]").click()
    wait_until_running(page)
    page.locator("button[data-action=cancel]").click()
    expect(page.locator("[data-job-status]")).to_have_text("cancelled", timeout=30_000)
    done = int(page.locator("[data-job-succeeded]").inner_text())
    assert 0 < done < 600
    assert len(env.beet_ids("^unmarked:normalize")) == done, "markers only for the items done"


def test_reload_and_a_second_tab_reattach(env: LibraryEnv, server: Server, page: Page, browser: Browser) -> None:
    add_many(env, 800)
    open_page(page, server)
    page.locator("button[data-op=process]").click()
    wait_until_running(page)
    job = page.locator("[data-job-id]").inner_text()

    other = page.context.new_page()  # a second tab
    other.goto(server.url("/unmarked"))
    expect(other.locator("[role=dialog]")).to_be_visible()
    expect(other.locator("[data-job-id]")).to_have_text(job)

    page.reload()
    expect(page.locator("[role=dialog]")).to_be_visible()
    expect(page.locator("[data-job-id]")).to_have_text(job)
    for tab in (page, other):
        expect(tab.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
        expect(tab.locator("[data-job-current]")).to_have_text("800 / 800")
        expect(tab.locator("[data-job-succeeded]")).to_have_text("800")


def test_a_job_started_from_the_cli_is_shown(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 800)
    cli = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = JobStore(store_path(env.lib))
    deadline = time.monotonic() + 30
    while not (store.active() or {}).get("current") and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        open_page(page, server)
        expect(page.locator("[role=dialog]")).to_be_visible()
        expect(page.locator("[data-job-origin]")).to_contain_text("started from cli")
        expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=60_000)
        expect(page.locator("[data-job-succeeded]")).to_have_text("800")
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

    button = page.locator("button[data-op=rename]")
    button.focus()
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
    page.locator("button[data-op=rename]").click()
    wait_until_running(page)
    worst = 0.0
    while status(page) != "completed":
        began = time.monotonic()
        page.evaluate("1 + 1")  # a round trip through the page's main thread
        worst = max(worst, time.monotonic() - began)
        time.sleep(0.05)
    assert worst < 0.5, f"the page's main thread was blocked for {worst:.2f} s"
    expect(page.locator("[data-job-current]")).to_have_text("2500 / 2500")


def test_under_gunicorn_sync_workers_the_page_resumes_by_itself(env: LibraryEnv, page: Page) -> None:
    web_settings(env)
    add_many(env, 700)
    server = gunicorn(env, "-w", "2", "--timeout", "2")
    try:
        open_page(page, server)
        page.locator("button[data-op=process]").click()
        expect(page.locator("[data-job-status]")).to_have_text("completed", timeout=90_000)
        expect(page.locator("[data-job-current]")).to_have_text("700 / 700")
        expect(page.locator("[data-job-succeeded]")).to_have_text("700")
    finally:
        server.stop()
    assert "WORKER TIMEOUT" not in server.log()
