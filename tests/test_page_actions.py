"""The page acts on exactly what the user sees, asks before bulk work, and tells
the truth about outcomes: Debian chromium driven by Playwright against a real
`beet web`, keyboard only where it matters, axe-core in every state.

The first two tests are the two cases as a user met them: an edited but
unsubmitted query, and one checked track with the job buttons.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from beets.library import Item
from playwright.sync_api import Browser, Locator, Page, Route, expect

from .axe import assert_accessible
from .gates import library_write_lock, wait_in_flight
from .libenv import LibraryEnv, read_only
from .servers import Server
from .shared import add_many
from .test_page import SCREENSHOTS, open_page
from .test_page_tracks import ROW, checkbox, focused, row, tab_to
from .test_web_api import marked_ids

pytestmark = pytest.mark.browser

CONFIRM = "[role=dialog][data-confirm]"


def plan_number(page: Page, name: str) -> Locator:
    return page.locator(f"{CONFIRM} [data-plan={name}]")


def wait_for_plan(page: Page) -> None:
    """Until the confirmation has checked every file."""
    expect(page.locator("[data-plan-progress]")).to_contain_text("checked", timeout=60_000)
    expect(page.locator("[data-plan-progress]")).not_to_contain_text("so far")


def confirm(page: Page) -> None:
    wait_for_plan(page)
    page.locator(f"{CONFIRM} button[data-action=confirm]").click()
    expect(page.locator(CONFIRM)).to_be_hidden()


def jobs(server: Server) -> list[dict]:
    return server.get("/api/jobs").json()["jobs"]


def finished(page: Page) -> None:
    expect(page.locator("[data-job-outcome]")).to_be_visible(timeout=60_000)


# --- 1. act on what is shown -------------------------------------------------------


def test_an_unsubmitted_query_edit_disables_every_action(env: LibraryEnv, server: Server, page: Page) -> None:
    """As found: submitted `artist:Sigur`, all matching selected, box cleared
    without Enter, "Mark as done" marked the whole library; a job ran over it too."""
    add_many(env, 6, artist="Other")
    sigur = add_many(env, 4, artist="Sigur")
    open_page(page, server)
    box = page.locator("input[name=query]")
    box.fill("artist:Sigur")
    box.press("Enter")
    expect(page.locator("[data-count=process]")).to_have_text("4")
    page.locator("input[name=select-all-matching]").check()
    expect(page.locator("[data-selected-count]")).to_have_text("All 4 matching tracks selected")

    box.fill("")  # cleared, not submitted: nothing may act on the whole library now
    for button in ("button[data-action=mark]", "button[data-action=unmark]", "button[data-op=process]",
                   "button[data-op=rename]", "button[data-op=normalize]"):
        expect(page.locator(button)).to_be_disabled()
        assert "query-stale" in (page.locator(button).get_attribute("aria-describedby") or ""), button
    stale = page.locator("[data-query-stale]")
    expect(stale).to_be_visible()
    expect(stale).to_contain_text("not applied yet")
    expect(page.locator("[data-query-in-force]")).to_have_text("Query in force: “artist:Sigur”")
    assert_accessible(page, "a query edited, not submitted")

    box.fill("artist:Sigur")  # back to what is shown: the actions come back
    expect(stale).to_be_hidden()
    page.locator("button[data-action=mark]").click()
    expect(page.locator("[data-result]")).to_contain_text("4 tracks matched")
    assert marked_ids(env, "normalized") == set(sigur), "only the tracks shown were marked"
    assert jobs(server) == []


def test_with_one_track_checked_the_job_covers_exactly_it(env: LibraryEnv, server: Server, page: Page) -> None:
    """As found: one track selected, "Process unmarked" moved and retagged every track."""
    ids = add_many(env, 5)
    paths = {item_id: env.item(item_id).path for item_id in ids}
    open_page(page, server)
    button = page.locator("button[data-op=process]")
    expect(page.locator("[data-count=process]")).to_have_text("5")
    checkbox(page, ids[2]).check()
    button.click()
    dialog = page.locator(CONFIRM)
    expect(dialog).to_be_visible()  # it asks first
    assert jobs(server) == []
    expect(dialog.locator("[data-confirm-title]")).to_have_text("Process 1 selected track?")
    wait_for_plan(page)
    expect(plan_number(page, "moves")).to_have_text("1")
    expect(plan_number(page, "retags")).to_have_text("1")
    expect(plan_number(page, "failures")).to_have_text("0")
    confirm(page)
    finished(page)
    expect(page.locator("[data-job-current]")).to_have_text("1 / 1")
    assert env.beet_ids("^unmarked:true") == [ids[2]], "only the checked track is done"
    for item_id in ids:
        moved = env.item(item_id).path != paths[item_id]
        assert moved == (item_id == ids[2]), f"item {item_id} moved: {moved}"
    assert jobs(server)[0]["total"] == 1
    page.locator("button[data-action=close]").click()
    expect(button).to_have_text("Process all 4 matching")
    checkbox(page, ids[0]).check()
    expect(button).to_have_text("Process 1 selected")
    expect(page.locator("button[data-op=rename]")).to_have_text("Rename 1 selected")


# --- 2. confirm bulk work with the whole plan ------------------------------------------


def planted_failures(env: LibraryEnv) -> dict[str, Item]:
    """A missing file, a corrupt MP3 (the library still lists it), an immutable FLAC."""
    missing = env.add_track("missing.ogg", {"title": "Missing  one", "artist": "Planted"})
    os.remove(missing.path)
    corrupt = env.add_track("corrupt.mp3", {"title": "Corrupt  one", "artist": "Planted"})
    Path(os.fsdecode(corrupt.path)).write_bytes(os.urandom(4096))
    locked = env.add_track("locked.flac", {"title": "Locked  one", "artist": "Planted"})
    return {"missing": missing, "corrupt": corrupt, "locked": locked}


def test_a_job_asks_first_with_the_whole_plan_and_failures_found_by_opening_files(
        env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 57)
    planted = planted_failures(env)
    with read_only(Path(os.fsdecode(planted["locked"].path))):
        open_page(page, server)
        button = page.locator("button[data-op=process]")
        expect(button).to_have_text("Process all 60 matching")  # counted: enabled
        button.focus()
        page.keyboard.press("Enter")
        dialog = page.locator(CONFIRM)
        expect(dialog).to_be_visible()
        expect(dialog.locator("button[data-action=dismiss]")).to_be_focused()
        wait_for_plan(page)
        expect(plan_number(page, "moves")).to_have_text("57")
        expect(plan_number(page, "retags")).to_have_text("57")
        expect(plan_number(page, "failures")).to_have_text("3")
        expect(dialog.locator("[data-cause=missing]")).to_have_text("1 missing file")
        expect(dialog.locator("[data-cause=unreadable]")).to_have_text("1 file that cannot be read as audio")
        expect(dialog.locator("[data-cause=not_writable]")).to_have_text("1 file that cannot be written")
        expect(dialog.locator("[data-plan-progress]")).to_contain_text("All 60 tracks checked")
        expect(dialog.locator("[data-plan-sample] li").first).to_be_attached()
        assert_accessible(page, "the confirmation")
        dialog.screenshot(path=str(SCREENSHOTS / "confirm-plan.png"))
        assert jobs(server) == [], "nothing starts before confirm"
        for key in ["Tab"] * 6 + ["Shift+Tab"] * 6:  # focus stays in the confirmation
            page.keyboard.press(key)
            assert dialog.evaluate("d => d.contains(document.activeElement)"), f"focus left it after {key}"

        page.keyboard.press("Escape")  # dismissed: nothing started, focus back where it was
        expect(dialog).to_be_hidden()
        expect(button).to_be_focused()
        assert jobs(server) == []

        page.keyboard.press("Enter")
        wait_for_plan(page)
        confirm_button = dialog.locator("button[data-action=confirm]")
        tab_to(page, confirm_button)
        page.keyboard.press("Enter")
        finished(page)
    outcome = page.locator("[data-job-outcome]")
    expect(outcome).to_have_text("Completed with 3 failures: 57 succeeded, 3 failed.")
    expect(outcome).to_have_attribute("data-style", "warning")
    reasons = {"missing": "The file is missing.",
               "corrupt": "The file cannot be read as audio: it is damaged or not in a supported format.",
               "locked": "The file cannot be changed: the system refuses it (it may be locked or marked immutable)."}
    for name, reason in reasons.items():
        failure = page.locator(f"[data-job-errors] li[data-item='{planted[name].id}']")
        expect(failure.locator(".reason")).to_have_text(reason)
        path = os.fsdecode(planted[name].path)
        assert failure.inner_text().count(path) == 1, f"the path once: {failure.inner_text()}"


def test_marking_more_than_a_page_asks_first(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 60)
    open_page(page, server)
    page.locator("input[name=select-all-matching]").check()
    mark = page.locator("button[data-action=mark]")
    mark.click()
    dialog = page.locator(CONFIRM)
    expect(dialog).to_be_visible()
    expect(dialog.locator("[data-confirm-title]")).to_have_text("Mark 60 tracks for process?")
    expect(plan_number(page, "moves")).to_have_text("0")
    expect(plan_number(page, "retags")).to_have_text("0")
    expect(plan_number(page, "failures")).to_have_text("0")
    expect(dialog.locator("[data-plan-progress]")).to_have_text(
        "No file is opened or changed: only the markers in the library.")
    dialog.locator("button[data-action=dismiss]").click()
    expect(mark).to_be_focused()
    assert marked_ids(env, "normalized") == set(), "nothing marked before confirm"
    mark.click()
    dialog.locator("button[data-action=confirm]").click()
    expect(page.locator("[data-result]")).to_contain_text("60 tracks matched")
    assert marked_ids(env, "normalized") == set(ids)

    # a page or less: no question
    page.locator("select[name=scope]").select_option("marked")
    expect(page.locator("[data-tracks-caption]")).to_have_text("Tracks for process (done): 1–50 of 60")
    checkbox(page, ids[0]).check()
    expect(page.locator("[data-selected-count]")).to_have_text("1 track selected")
    page.locator("button[data-action=unmark]").click()
    expect(page.locator("[data-result]")).to_contain_text("1 track matched")
    expect(dialog).to_be_hidden()


# --- 3. dialogs: focus kept, minimised, announced -------------------------------------------


def test_the_job_dialog_keeps_focus_minimises_and_announces(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 20)
    open_page(page, server)
    page.evaluate("""() => {
        window.__said = [];
        const region = document.querySelector("[data-announce]");
        const heard = () => { if (region.textContent) window.__said.push(region.textContent); };
        window.__listener = new MutationObserver(heard);  // kept referenced: never collected
        window.__listener.observe(region, {childList: true, characterData: true, subtree: true});
    }""")
    assert page.locator("[aria-live=polite], [role=status]").count() == 1, "one polite live region"
    button = page.locator("button[data-op=rename]")
    expect(button).to_have_text("Rename all 20 matching")
    button.focus()
    page.keyboard.press("Enter")
    wait_for_plan(page)
    dialog = page.locator("[data-job-dialog]")
    with library_write_lock(env):  # the job runs, and cannot end, while the dialog is tried
        page.locator("button[data-action=confirm]").press("Enter")
        expect(page.locator("[data-job-status]")).to_have_text("running", timeout=30_000)
        wait_in_flight(env)
        for _ in range(12):  # Tab goes round inside the dialog, never to the page behind
            page.keyboard.press("Tab")
            assert dialog.evaluate("d => d.contains(document.activeElement)"), "focus left the dialog"
        for _ in range(12):
            page.keyboard.press("Shift+Tab")
            assert dialog.evaluate("d => d.contains(document.activeElement)"), "focus left the dialog"
        assert_accessible(page, "a running job")

        page.keyboard.press("Escape")  # minimised: a strip, the page usable
        expect(dialog).to_be_hidden()
        strip = page.locator("[data-job-strip]")
        expect(strip).to_be_visible()
        expect(strip).to_contain_text("0 / 20")
        expect(page.locator("button[data-action=reopen]")).to_be_focused()
        assert_accessible(page, "a job minimised")
        page.locator("input[name=query]").focus()
        page.keyboard.type("artist:Artist")
        page.keyboard.press("Enter")
        expect(page.locator("[data-query-in-force]")).to_contain_text("artist:Artist")
        checkbox(page, ids[0]).check()
        expect(page.locator("[data-selected-count]")).to_have_text("1 track selected")

        tab_to(page, page.locator("button[data-action=reopen]"))
        page.keyboard.press("Enter")
        expect(dialog).to_be_visible()
        page.locator("button[data-action=minimise]").click()
        expect(dialog).to_be_hidden()
    expect(page.locator("[data-job-strip]")).to_contain_text("completed: 20 succeeded, 0 failed.", timeout=60_000)
    expect(page.locator("[data-announce]")).to_have_text("Job 1 completed: 20 succeeded, 0 failed.")
    said = page.evaluate("window.__said")
    assert any("started" in text for text in said), said
    tenths = [int(m.group(1)) for text in said for m in [re.search(r"(\d+) % done", text)] if m]
    assert tenths == list(range(10, 100, 10)), said
    assert said[-1] == "Job 1 completed: 20 succeeded, 0 failed.", said


# --- 4. honest, actionable outcomes -------------------------------------------------------


def test_failures_once_in_plain_words_retry_and_the_record(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 210, artist="Gone")
    kept = add_many(env, 3, artist="Here")
    for item_id in ids:
        os.remove(env.item(item_id).path)
    open_page(page, server)
    page.locator("button[data-op=normalize]").click()
    wait_for_plan(page)
    expect(plan_number(page, "failures")).to_have_text("210")
    confirm(page)
    finished(page)
    outcome = page.locator("[data-job-outcome]")
    expect(outcome).to_have_text("Completed with 210 failures: 3 succeeded, 210 failed.")
    expect(outcome).to_have_attribute("data-style", "warning")
    failures = page.locator("[data-job-errors] li")
    expect(failures).to_have_count(200)
    path = os.fsdecode(env.item(ids[0]).path)
    first = failures.first
    expect(first.locator(".reason")).to_have_text("The file is missing.")
    expect(first.locator(".path")).to_have_text(path)
    assert first.inner_text().count(path) == 1, "the path once"
    expect(page.locator("[data-next-step]")).to_contain_text("stay unmarked")
    more = page.locator("button[data-action=show-failures]")
    expect(more).to_have_text("… and 10 more failed tracks: show them all")
    assert_accessible(page, "a job with failures")
    page.locator("[data-job-dialog]").evaluate("d => { d.scrollTop = 0; }")
    page.locator("[data-job-dialog]").screenshot(path=str(SCREENSHOTS / "dialog-failures.png"))

    more.click()  # the record, filtered to failures, all 210 in one step
    expect(page.locator("select[name=record-status]")).to_have_value("failed")
    expect(page.locator("[data-record-items] [data-record-item]")).to_have_count(210)
    expect(page.locator("[data-record-note]")).to_have_text("210 failed tracks; showing 210.")
    page.locator("select[name=record-status]").select_option("succeeded")
    expect(page.locator("[data-record-items] [data-record-item]")).to_have_count(3)
    assert_accessible(page, "a job's record")

    for item_id in ids[:5]:  # the user fixes some of them
        env.add_track(os.path.basename(os.fsdecode(env.item(item_id).path)), {"title": "back"},
                      where=Path(os.path.dirname(os.fsdecode(env.item(item_id).path))))
    page.locator("button[data-action=retry-failed]").click()
    dialog = page.locator(CONFIRM)
    expect(dialog.locator("[data-confirm-title]")).to_have_text("Retry the 210 failed tracks of job 1?")
    wait_for_plan(page)
    confirm(page)
    finished(page)
    retry = jobs(server)[0]
    assert retry["job"] == 2 and retry["total"] == 210, retry
    record = server.get("/api/jobs/2/items", params={"limit": 1000}).json()["items"]
    assert sorted(item["item_id"] for item in record) == sorted(ids), "exactly the failed tracks"
    assert set(kept).isdisjoint(item["item_id"] for item in record)


def test_the_record_pages_in_large_steps(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 3)
    with env.lib.transaction():  # tracks whose files are gone: cheap failures
        for n in range(700):
            env.lib.add(Item(title=f"t{n}", artist="Ghost", path=str(env.incoming / f"ghost{n}.mp3").encode()))
    job = server.post("/api/normalize-unmarked").json()["job"]
    open_page(page, server)
    page.locator(f"[data-job-row][data-job='{job}'] button").click()
    items = page.locator("[data-record-items] [data-record-item]")
    expect(items).to_have_count(500)
    expect(page.locator("[data-record-note]")).to_have_text("703 tracks; showing 500.")
    more = page.locator("button[data-action=record-more]")
    expect(more).to_have_text("Show 203 more")
    more.click()
    expect(items).to_have_count(703)
    expect(more).to_be_hidden()
    expect(page.locator("[data-job-row]").first.locator("td[data-label=Status]")).to_have_text(
        "completed with 700 failures")


# --- 5. visible diffs; typed text finds either Unicode form ------------------------------------


def test_whitespace_and_unicode_forms_are_visible_and_typed_search_finds_both(
        env: LibraryEnv, server: Server, page: Page) -> None:
    nfd = unicodedata.normalize("NFD", "Björk")
    stored = env.add_track("bjork.flac", {"title": "Joga ", "artist": nfd, "album": "Homogenic"})
    env.add_track("other.flac", {"title": "Other", "artist": "Someone", "album": "Else"})
    open_page(page, server)
    box = page.locator("input[name=query]")
    box.fill("Björk")  # typed: composed (NFC)
    box.press("Enter")
    expect(page.locator("[data-count=normalize]")).to_have_text("1")
    expect(page.locator(ROW)).to_have_count(1)
    page.locator("button[data-action=preview]").click()
    preview = row(page, stored.id).locator("[data-preview]")
    artist = preview.locator("li[data-field=artist]")
    expect(artist.locator("[data-unicode-form]")).to_have_text("Unicode form only: NFD → NFC")
    title = preview.locator("li[data-field=title]")
    expect(title.locator("del")).to_have_text("Joga·")
    expect(title.locator("del .ws")).to_have_attribute("title", "a space")
    expect(title.locator("ins")).to_have_text("Joga")
    assert_accessible(page, "a preview with whitespace and Unicode changes")

    page.locator("button[data-op=normalize]").click()
    wait_for_plan(page)
    expect(plan_number(page, "retags")).to_have_text("1")
    confirm(page)
    finished(page)
    assert env.item(stored.id).artist == "Björk"


def test_a_count_answered_late_for_a_query_no_longer_in_force_is_not_shown(
        env: LibraryEnv, server: Server, page: Page) -> None:
    """The page's first counts (no query) answer only after a typed query's
    have: they must not overwrite the counts of the query in force (seen in
    CI under load: "2" shown for a query matching 1)."""
    nfd = unicodedata.normalize("NFD", "Björk")
    env.add_track("bjork.flac", {"title": "Joga ", "artist": nfd, "album": "Homogenic"})
    env.add_track("other.flac", {"title": "Other", "artist": "Someone", "album": "Else"})
    held: list[Route] = []

    def hold_unfiltered_counts(route: Route) -> None:
        params = parse_qs(urlparse(route.request.url).query, keep_blank_values=True)
        if params.get("limit") == ["1"] and params.get("query") == [""] and len(held) < 3:
            held.append(route)  # answered below, after the typed query's counts
        else:
            route.continue_()

    page.route("**/api/unmarked?*", hold_unfiltered_counts)
    open_page(page, server)
    box = page.locator("input[name=query]")
    box.fill("Björk")
    box.press("Enter")
    expect(page.locator("[data-count=normalize]")).to_have_text("1")
    assert len(held) == 3, "the first counts were held"
    for route in held:
        with page.expect_response(route.request.url):
            route.continue_()
    page.evaluate("() => new Promise((done) => setTimeout(done, 0))")  # (the late answers' handlers have run)
    expect(page.locator("[data-count=normalize]")).to_have_text("1")
    expect(page.locator("[data-count=process]")).to_have_text("1")


# --- 7. dark mode, grouped thousands, 24 px targets --------------------------------------------


def test_dark_mode_grouped_thousands_and_24px_targets(env: LibraryEnv, server: Server, browser: Browser) -> None:
    add_many(env, 3)
    with env.lib.transaction():
        for n in range(1200):
            env.lib.add(Item(title=f"t{n}", artist="Many", path=str(env.incoming / f"many{n}.mp3").encode()))
    for scheme in ("dark", "light"):
        context = browser.new_context(viewport={"width": 1000, "height": 760}, color_scheme=scheme, locale="en-US")
        page = context.new_page()
        try:
            open_page(page, server)
            expect(page.locator("[data-count=process]")).to_have_text("1,203")
            expect(page.locator("button[data-op=process]")).to_have_text("Process all 1,203 matching")
            expect(page.locator("[data-matching-count]")).to_have_text("1,203")
            background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
            assert (background == "rgb(22, 24, 27)") == (scheme == "dark"), background
            small = page.evaluate("""() => [...document.querySelectorAll("button, input, select")]
                .filter((e) => e.offsetParent !== null)
                .map((e) => [e.outerHTML.slice(0, 80), e.getBoundingClientRect()])
                .filter(([, r]) => r.width < 24 || r.height < 24)
                .map(([html, r]) => `${html} ${r.width}x${r.height}`)""")
            assert small == [], small
            assert_accessible(page, f"{scheme} mode")
            page.locator("button[data-action=preview]").click()
            expect(page.locator("[data-result]")).to_contain_text("Nothing has been changed")
            assert_accessible(page, f"{scheme} mode, a preview")
            expect(page.locator("[data-job-strip]")).to_be_hidden()
            if scheme == "dark":
                page.screenshot(path=str(SCREENSHOTS / "page-dark.png"))
        finally:
            context.close()


def test_focus_returns_and_keyboard_reaches_the_pager(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 120)
    open_page(page, server)
    page.locator("input[name=query]").focus()
    last = page.locator("button[data-action=last]")
    tab_to(page, last)
    page.keyboard.press("Enter")
    expect(page.locator("[data-page-info]")).to_have_text("Page 3 of 3")
    size = page.locator("select[name=page-size]")
    tab_to(page, size)
    size.select_option("200")
    expect(page.locator(ROW)).to_have_count(120)
    expect(page.locator("[data-page-info]")).to_have_text("Page 1 of 1")
    assert focused(size)
