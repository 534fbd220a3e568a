"""The page's track table, marking, preview and job records in a real browser
(Debian chromium driven by Playwright, against a real `beet web`)."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from .axe import assert_accessible
from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import add_many
from .test_page import SCREENSHOTS, XSS_NAME, open_page
from .test_web_api import marked_ids
from .test_web_marking import Snapshot, messy_album

pytestmark = pytest.mark.browser

ROW = "[data-track-row]"


def row(page: Page, item_id: int) -> Locator:
    return page.locator(f"{ROW}[data-id='{item_id}']")


def checkbox(page: Page, item_id: int) -> Locator:
    return row(page, item_id).locator("input[type=checkbox][name=select]")


def shown_ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator(ROW).evaluate_all("rows => rows.map(r => r.dataset.id)")]


def focused(locator: Locator) -> bool:
    return locator.evaluate("element => element === document.activeElement")


def tab_to(page: Page, locator: Locator, backwards: bool = False, limit: int = 150) -> None:
    """Press Tab (or Shift+Tab) until ``locator`` has the focus: the keyboard's way there."""
    for _ in range(limit):
        if focused(locator):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"Tab never reached {locator}")


def test_select_rows_mark_and_the_counts_refresh(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 60)
    open_page(page, server)
    expect(page.locator("[data-count=process]")).to_have_text("60")
    expect(page.locator(ROW)).to_have_count(50)
    expect(page.locator("[data-tracks-caption]")).to_have_text("Tracks for process (not yet done): 1–50 of 60")
    first = row(page, ids[0])
    expect(first.locator("td").nth(1)).to_have_text("Artist")
    expect(first.locator("td").nth(2)).to_have_text("  Song   0 ft. X")
    expect(first.locator("td").nth(3)).to_have_text("LP")
    expect(first.locator("td.path")).to_have_text(os.fsdecode(env.item(ids[0]).path))
    expect(page.locator("button[data-action=prev]")).to_be_disabled()

    page.locator("button[data-action=next]").click()
    expect(page.locator(ROW)).to_have_count(10)
    assert shown_ids(page) == ids[50:]
    checkbox(page, ids[55]).check()  # a selection spans pages
    expect(page.locator("button[data-action=next]")).to_be_disabled()
    page.locator("button[data-action=prev]").click()
    expect(page.locator(ROW)).to_have_count(50)
    checkbox(page, ids[3]).check()
    checkbox(page, ids[7]).check()
    expect(page.locator("[data-selected-count]")).to_have_text("3 tracks selected")

    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url}") if r.method == "POST" else None)
    page.locator("button[data-action=mark]").click()
    expect(page.locator("[data-result]")).to_have_text(
        "Marked as done for process: 3 tracks matched; normalized set on 3, renamed set on 3.")
    assert requests == [f"POST {server.url('/api/mark')}"], "one request for the whole selection"
    expect(page.locator("[data-count=process]")).to_have_text("57")
    expect(page.locator("[data-count=rename]")).to_have_text("57")
    expect(row(page, ids[3])).to_have_count(0)
    expect(page.locator("[data-selected-count]")).to_have_text("No tracks selected")
    assert marked_ids(env, "normalized") == marked_ids(env, "renamed") == {ids[3], ids[7], ids[55]}
    assert env.beet_ids("unmarked:false") == [ids[3], ids[7], ids[55]], "beets sees the markers"


def test_select_all_matching_marks_every_page(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 3, artist="Alpha")
    beta = add_many(env, 70, artist="Beta")
    open_page(page, server)
    page.locator("select[name=op]").select_option("normalize")
    page.locator("input[name=query]").fill("artist:Beta")
    page.locator("input[name=query]").press("Enter")
    expect(page.locator("[data-matching-count]")).to_have_text("70")
    page.locator("input[name=select-all-matching]").check()
    expect(page.locator("[data-selected-count]")).to_have_text("All 70 matching tracks selected")
    expect(page.locator(f"{ROW} input[name=select]:checked")).to_have_count(50)
    page.locator("button[data-action=mark]").click()  # more than a page: it asks first
    page.locator("[role=dialog][data-confirm] button[data-action=confirm]").click()
    expect(page.locator("[data-result]")).to_contain_text("70 tracks matched; normalized set on 70.")
    expect(page.locator("[data-count=normalize]")).to_have_text("0")
    expect(page.locator(ROW)).to_have_count(0)
    expect(page.locator("[data-tracks-body]")).to_contain_text("No tracks match.")
    assert sorted(marked_ids(env, "normalized")) == beta and marked_ids(env, "renamed") == set()


def test_preview_shows_old_and_new_and_changes_nothing(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 3)
    album = messy_album(env)
    before = Snapshot(env)
    open_page(page, server)
    expect(page.locator(ROW)).to_have_count(6)
    expect(page.locator("[data-preview]:visible")).to_have_count(0)
    page.locator("button[data-action=preview]").click()
    expect(page.locator("[data-result]")).to_have_text(
        "Preview for process of 6 tracks on this page (of 6): 6 would change. "
        "Nothing has been changed; a job shows its whole plan before it starts.")
    preview = row(page, ids[1]).locator("[data-preview]")
    expect(preview).to_be_visible()
    title = preview.locator("li[data-field=title]")
    expect(title.locator("del")).to_have_text("··Song···1 ft. X")  # the spaces that go are visible
    expect(title.locator("del .ws").first).to_have_attribute("title", "2 spaces")
    expect(title.locator("ins")).to_have_text("Song 1 feat. X")
    expect(title).to_have_text("title: ··Song···1 ft. X → Song 1 feat. X")
    expect(preview.locator("li[data-field=path] .dest")).to_have_text(
        str(env.lib_path / "Singles" / "Artist - Song 1 feat. X.ogg"))
    album_preview = row(page, album[0]).locator("[data-preview]")
    expect(album_preview.locator("li[data-field=album] ins")).to_have_text("Big Album")
    expect(album_preview.locator("li[data-field=path]")).to_contain_text(str(env.lib_path / "Band" / "Big Album"))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("section.tracks").screenshot(path=str(SCREENSHOTS / "tracks-preview.png"))
    assert Snapshot(env) == before, "no rows, no files, no album rows, no job"
    expect(page.locator("[data-count=process]")).to_have_text("6")


def test_unmark_by_query(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 4, artist="Alpha")
    beta = add_many(env, 3, artist="Beta")
    env.beet("mark", "--all")
    open_page(page, server)
    expect(page.locator("[data-count=process]")).to_have_text("0")
    page.locator("input[name=query]").fill("artist:Beta")
    page.locator("input[name=query]").press("Enter")
    page.locator("select[name=scope]").select_option("marked")
    expect(page.locator(ROW)).to_have_count(3)
    expect(page.locator("[data-tracks-caption]")).to_have_text("Tracks for process (done): 1–3 of 3")
    page.get_by_role("checkbox", name="Select all 3 matching tracks").check()
    page.locator("button[data-action=unmark]").click()
    expect(page.locator("[data-result]")).to_have_text(
        "Unmarked for process: 3 tracks matched; normalized cleared from 3, renamed cleared from 3.")
    expect(page.locator("[data-count=process]")).to_have_text("3")
    expect(page.locator(ROW)).to_have_count(0)
    assert env.beet_ids("unmarked:true") == beta
    page.locator("input[name=query]").fill("")
    page.locator("input[name=query]").press("Enter")
    expect(page.locator("[data-count=process]")).to_have_text("3")
    expect(page.locator(ROW)).to_have_count(4)


def test_recent_jobs_open_their_record_failures_first(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 6)
    gone = [env.item(ids[2]), env.item(ids[4])]
    for item in gone:
        os.remove(item.path)
    first = server.post("/api/normalize-unmarked", json={"query": "artist:Nobody"}).json()["job"]
    job = server.post("/api/rename-unmarked").json()["job"]
    open_page(page, server)
    rows = page.locator("[data-job-row]")
    expect(rows).to_have_count(2)
    newest = rows.first
    assert newest.get_attribute("data-job") == str(job) and rows.nth(1).get_attribute("data-job") == str(first)
    for text in ("completed", "rename", "web", "4 succeeded, 2 failed, 0 skipped of 6"):
        expect(newest).to_contain_text(text)
    expect(newest.locator("time")).to_have_count(1)
    expect(newest.locator("td[data-label='How long']")).to_have_text(re.compile(r"^\d+\.\d s$"))

    newest.click()
    dialog = page.locator("[role=dialog]")
    expect(dialog).to_be_visible()
    expect(page.locator("[data-job-status]")).to_have_text("completed")
    expect(page.locator("[data-job-succeeded]")).to_have_text("4")
    expect(page.locator("[data-job-failed]")).to_have_text("2")
    items = page.locator("[data-record-items] [data-record-item]")
    expect(items).to_have_count(6)
    expect(items.nth(0)).to_have_attribute("data-status", "failed")
    expect(items.nth(0)).to_have_text(f"failed: The file is missing. {os.fsdecode(gone[0].path)}")
    expect(items.nth(1)).to_have_text(f"failed: The file is missing. {os.fsdecode(gone[1].path)}")
    for n in range(2, 6):
        expect(items.nth(n)).to_have_attribute("data-status", "succeeded")
    expect(items.nth(2)).to_contain_text(f" → {env.lib_path}/Singles/Artist - ")
    expect(page.locator("[data-record-note]")).to_have_text("6 tracks; showing 6.")
    dialog.screenshot(path=str(SCREENSHOTS / "job-record.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(newest.locator("button")).to_be_focused()


def test_keyboard_only(env: LibraryEnv, server: Server, page: Page) -> None:
    ids = add_many(env, 5)
    open_page(page, server)
    expect(page.locator(ROW)).to_have_count(5)
    page.locator("input[name=query]").focus()

    box = checkbox(page, ids[1])
    tab_to(page, box)
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    tab_to(page, page.locator("button[data-action=preview]"), backwards=True)
    page.keyboard.press("Enter")
    expect(row(page, ids[1]).locator("[data-preview] ins")).to_have_text("Song 1 feat. X")
    mark = page.locator("button[data-action=mark]")
    tab_to(page, mark, backwards=True)
    page.keyboard.press("Enter")
    expect(page.locator("[data-result]")).to_contain_text("1 track matched")
    expect(page.locator("[data-count=process]")).to_have_text("4")
    assert marked_ids(env, "renamed") == {ids[1]}

    tab_to(page, page.locator("select[name=scope]"), backwards=True)
    page.keyboard.press("ArrowDown")  # a closed <select> changes with the arrow keys
    expect(page.locator("[data-tracks-caption]")).to_have_text("Tracks for process (done): 1–1 of 1")
    only = page.locator("input[name=select-all-matching]")
    tab_to(page, only)
    page.keyboard.press("Space")
    tab_to(page, page.locator("button[data-action=unmark]"))
    page.keyboard.press("Enter")
    expect(page.locator("[data-result]")).to_contain_text("Unmarked for process: 1 track matched")
    assert marked_ids(env, "renamed") == set()

    job = server.post("/api/rename-unmarked").json()["job"]
    page.reload()
    opener = page.locator(f"[data-job-row][data-job='{job}'] button")
    page.locator("input[name=query]").focus()
    tab_to(page, opener)
    page.keyboard.press("Enter")
    expect(page.locator("[data-job-status]")).to_have_text("completed")
    expect(page.locator("button[data-action=close]")).to_be_focused()
    expect(page.locator("[data-record-items] [data-record-item]")).to_have_count(5)
    page.keyboard.press("Enter")  # Close
    expect(page.locator("[role=dialog]")).to_be_hidden()
    expect(opener).to_be_focused()


def test_screen_reader_semantics(env: LibraryEnv, server: Server, page: Page) -> None:
    add_many(env, 2)
    open_page(page, server)
    table = page.get_by_role("table", name="Tracks for process (not yet done): 1–2 of 2")
    expect(table).to_be_visible()
    for header in ("Artist", "Title", "Album", "Path", "Would change"):
        expect(table.get_by_role("columnheader", name=header)).to_have_count(1)
    expect(table.get_by_role("row")).to_have_count(3)
    expect(table.get_by_role("checkbox", name="Select   Song   0 ft. X by Artist")).to_have_count(1)
    expect(table.get_by_role("checkbox", name="Select every track on this page")).to_have_count(1)
    expect(page.get_by_role("checkbox", name="Select all 2 matching tracks")).to_have_count(1)
    expect(page.get_by_role("combobox", name="Operation")).to_have_value("process")
    expect(page.get_by_role("combobox", name="Show")).to_have_value("unmarked")
    status = page.get_by_role("status")
    expect(status).to_have_attribute("aria-live", "polite")
    page.get_by_role("button", name="Preview changes").click()
    expect(status).to_contain_text("Nothing has been changed")
    expect(page.get_by_role("navigation", name="Track pages")).to_be_visible()
    jobs = page.get_by_role("table", name="Newest first; open one to see its record, failed items first.")
    expect(jobs).to_be_visible()


def test_phone_width(env: LibraryEnv, server: Server, browser: Browser) -> None:
    ids = add_many(env, 12)
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        open_page(phone, server)
        expect(phone.locator(ROW)).to_have_count(12)
        assert phone.evaluate("document.documentElement.scrollWidth") <= 360, "nothing wider than the screen"
        for control in ("button[data-action=mark]", "button[data-action=unmark]", "button[data-action=preview]",
                        "button[data-op=process]", "input[name=select-all-matching]", "select[name=op]"):
            box = phone.locator(control).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, control
        first = row(phone, ids[0])
        # each cell says what it is
        expect(first.get_by_role("cell", name=re.compile("^Title: Song 0"))).to_have_count(1)
        assert first.bounding_box()["width"] <= 360
        table = phone.get_by_role("table", name="Tracks for process (not yet done): 1–12 of 12")
        expect(table).to_be_visible()  # still a table with rows and headers to a screen reader
        expect(table.get_by_role("row")).to_have_count(13)
        expect(table.get_by_role("columnheader", name="Title")).to_have_count(1)
        checkbox(phone, ids[0]).tap()
        phone.locator("button[data-action=preview]").tap()
        expect(first.locator("[data-preview] ins")).to_have_text("Song 0 feat. X")
        assert phone.evaluate("document.documentElement.scrollWidth") <= 360, "a preview fits too"
        phone.screenshot(path=str(SCREENSHOTS / "phone.png"))
        assert_accessible(phone, "a phone-width screen with a preview")
        phone.locator("button[data-action=mark]").tap()
        expect(phone.locator("[data-count=process]")).to_have_text("11")
        assert marked_ids(env, "normalized") == {ids[0]}
    finally:
        context.close()


def test_tags_are_text_never_markup(env: LibraryEnv, server: Server, page: Page) -> None:
    evil = env.add_track(f"{XSS_NAME}.mp3", {"title": XSS_NAME, "artist": "<b>Bold</b>", "album": "<i>LP</i>"})
    open_page(page, server)
    shown = row(page, evil.id)
    expect(shown.locator("td").nth(2)).to_have_text(XSS_NAME)
    expect(shown.locator("td").nth(1)).to_have_text("<b>Bold</b>")
    page.locator("button[data-action=preview]").click()
    expect(shown.locator("[data-preview]")).to_contain_text("moves to")
    assert page.evaluate("window.__xss") is None, "a tag's markup must never run"
    assert page.locator("[data-tracks] img, [data-tracks] b, [data-tracks] i").count() == 0


def test_read_only_disables_marking_and_says_why(env: LibraryEnv, page: Page) -> None:
    ids = add_many(env, 2)
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        open_page(page, server)
        checkbox(page, ids[0]).check()
        expect(page.locator("[data-selected-count]")).to_have_text("1 track selected")
        for action in ("mark", "unmark"):
            button = page.locator(f"button[data-action={action}]")
            expect(button).to_be_disabled()
            expect(button).to_have_attribute("aria-describedby", "readonly-note")
        page.locator("button[data-action=preview]").click()  # reading is fine
        expect(row(page, ids[0]).locator("[data-preview] ins")).to_have_text("Song 0 feat. X")
        assert_accessible(page, "a read-only server")
    finally:
        server.stop()
    assert marked_ids(env, "normalized") == set()
