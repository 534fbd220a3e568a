"""Marking, preview, job records, hosts, bad input and resumed streams, over a real socket.

Every test talks to a real `beet web` subprocess (the `server` fixture) and
checks the library on disk with its own SQLite connection.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from beetsplug.unmarked.jobs import JobStore, store_path

from .gates import library_write_lock, running_job
from .libenv import LibraryEnv
from .servers import Server, beet_web, gunicorn, web_settings
from .shared import add_many
from .test_web_api import marked_ids, wait_status

# --- what a request may and may not have changed --------------------------------


def change_counter(env: LibraryEnv) -> int:
    """SQLite's file change counter (header bytes 24-27): in the rollback-journal
    mode beets uses, it goes up by one per committed write transaction."""
    with open(env.settings["library"], "rb") as db:
        return int.from_bytes(db.read(28)[24:28], "big")


def library_rows(env: LibraryEnv) -> list[str]:
    with sqlite3.connect(env.settings["library"]) as conn:
        return list(conn.iterdump())


def files(*roots: Path) -> dict[str, tuple[int, int, str]]:
    found = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                found[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def job_rows(env: LibraryEnv) -> list[tuple[Any, ...]]:
    path = store_path(env.lib)
    if not os.path.exists(path):
        return []
    with sqlite3.connect(path) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
            return []  # the server is creating the store this instant: no job yet
        return conn.execute("SELECT id, status FROM jobs").fetchall()


class Snapshot:
    """The library's rows, its files and the job rows, to compare before and after."""

    def __init__(self, env: LibraryEnv) -> None:
        self.rows = library_rows(env)
        self.files = files(env.incoming, env.lib_path)
        self.jobs = job_rows(env)
        self.counter = change_counter(env)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and vars(self) == vars(other)


def refused(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"], response.json()


# --- 1. batch mark / unmark ---------------------------------------------------------


def test_mark_and_unmark_ids(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 6)
    before = change_counter(env)
    marked = server.post("/api/mark", json={"op": "rename", "ids": [ids[0], ids[1], 99_999, ids[1]]})
    assert marked.status_code == 200
    assert marked.json() == {"op": "rename", "matched": 2, "changed": {"normalized": 0, "renamed": 2}}
    assert change_counter(env) == before + 1, "one library transaction"
    assert marked_ids(env, "renamed") == {ids[0], ids[1]} and marked_ids(env, "normalized") == set()
    assert env.beet_ids("^unmarked:rename") == ids[:2], "beets sees the markers"

    again = server.post("/api/mark", json={"op": "process", "ids": ids[:3]}).json()
    assert again == {"op": "process", "matched": 3, "changed": {"normalized": 3, "renamed": 1}}, \
        "markers an item has keep their time and are not counted"
    cleared = server.post("/api/unmark", json={"op": "normalize", "ids": ids}).json()
    assert cleared == {"op": "normalize", "matched": 6, "changed": {"normalized": 3, "renamed": 0}}
    assert marked_ids(env, "normalized") == set() and marked_ids(env, "renamed") == set(ids[:3])


def test_mark_and_unmark_by_query(env: LibraryEnv, server: Server) -> None:
    alpha = add_many(env, 4, artist="Alpha")
    beta = add_many(env, 3, artist="Beta")
    marked = server.post("/api/mark", json={"op": "process", "query": "artist:Beta"}).json()
    assert marked == {"op": "process", "matched": 3, "changed": {"normalized": 3, "renamed": 3}}
    assert env.beet_ids("unmarked:false") == beta

    nothing = server.post("/api/unmark", json={"op": "process", "query": "  "}).json()
    assert nothing["matched"] == 0, "an empty query selects nothing"
    missing = server.post("/api/unmark", json={"op": "process"}).json()
    assert missing["matched"] == 0, "so does a missing one"
    assert env.beet_ids("unmarked:false") == beta

    # "scope" narrows a query to the items the operation has (not) done: the page's "all matching".
    scoped = server.post("/api/mark", json={"op": "rename", "query": "", "all": True, "scope": "unmarked"}).json()
    assert scoped == {"op": "rename", "matched": 4, "changed": {"normalized": 0, "renamed": 4}}
    everything = server.post("/api/unmark", json={"op": "rename", "query": "", "all": True}).json()
    assert everything == {"op": "rename", "matched": 7, "changed": {"normalized": 0, "renamed": 7}}
    assert marked_ids(env, "renamed") == set() and marked_ids(env, "normalized") == set(beta)
    assert alpha


def test_database_change_is_sent_once_per_request(env: LibraryEnv) -> None:
    """A plugin listening to beets' `database_change` hears each marker write."""
    plugdir = env.temp_path / "plugins"
    plugdir.mkdir()
    heard = env.temp_path / "heard.txt"
    (plugdir / "dbwatch.py").write_text(
        "from beets.plugins import BeetsPlugin\n\n\n"
        "class DbWatch(BeetsPlugin):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.register_listener('database_change', self.changed)\n\n"
        "    def changed(self, lib, model):\n"
        "        with open(self.config['log'].as_str(), 'a') as log:\n"
        "            log.write(f'{type(model).__name__}\\n')\n"
    )
    web_settings(env)
    env.configure(plugins=["unmarked", "web", "dbwatch"], pluginpath=[str(plugdir)], dbwatch={"log": str(heard)})
    ids = add_many(env, 3)
    server = beet_web(env)
    try:
        assert server.post("/api/mark", json={"op": "process", "ids": ids}).json()["matched"] == 3
        assert heard.read_text().splitlines() == ["Item"]
        assert server.post("/api/unmark", json={"op": "rename", "query": "artist:Artist"}).json()["matched"] == 3
        assert heard.read_text().splitlines() == ["Item", "Item"]
        server.post("/api/unmark", json={"op": "rename", "ids": ids})  # nothing left to clear
        assert heard.read_text().splitlines() == ["Item", "Item"], "no change, no announcement"
    finally:
        server.stop()


def insert_items(env: LibraryEnv, count: int) -> list[int]:
    """Item rows without files, in one statement (beets' add() would take minutes)."""
    with sqlite3.connect(env.settings["library"]) as conn:
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM items").fetchone()[0]
        conn.executemany("INSERT INTO items (id, title, artist, album, path) VALUES (?, ?, ?, ?, ?)",
                         [(first + n, f"Title {n}", f"Artist {n % 50}", "LP", f"/nowhere/{n}.mp3".encode())
                          for n in range(count)])
    return list(range(first, first + count))


def test_a_hundred_thousand_ids_in_one_transaction(env: LibraryEnv, server: Server) -> None:
    ids = insert_items(env, 100_000)
    before = change_counter(env)
    began = time.monotonic()
    response = server.post("/api/mark", json={"op": "process", "ids": ids})
    took = time.monotonic() - began
    assert response.json() == {"op": "process", "matched": 100_000,
                               "changed": {"normalized": 100_000, "renamed": 100_000}}
    assert change_counter(env) == before + 1, "one commit for 100 000 items"
    assert len(marked_ids(env, "normalized")) == len(marked_ids(env, "renamed")) == 100_000
    cleared = server.post("/api/unmark", json={"op": "rename", "ids": ids}).json()
    assert cleared["changed"] == {"normalized": 0, "renamed": 100_000}
    assert change_counter(env) == before + 2
    print(f"marking 100 000 ids over HTTP: {took:.2f} s")


def test_a_locked_library_is_a_503_and_nothing_is_written(env: LibraryEnv, server: Server) -> None:
    env.configure(timeout=0.5)  # beets' wait for a locked library, for the server started below
    ids = add_many(env, 3)
    server.stop()
    server = beet_web(env)
    try:
        with library_write_lock(env):
            response = server.post("/api/mark", json={"op": "process", "ids": ids})
        refused(response, 503, "is locked by another process")
        assert marked_ids(env, "normalized") == set()
        assert server.post("/api/mark", json={"op": "process", "ids": ids}).json()["matched"] == 3
    finally:
        server.stop()


def test_read_only_server_refuses_marking(env: LibraryEnv) -> None:
    ids = add_many(env, 3)
    web_settings(env, readonly=True)
    server = beet_web(env)
    try:
        before = Snapshot(env)
        for path in ("/api/mark", "/api/unmark"):
            refused(server.post(path, json={"op": "process", "ids": ids}), 403, "read-only")
            refused(server.post(path, json={"op": "process", "query": "", "all": True}), 403, "read-only")
        assert Snapshot(env) == before
    finally:
        server.stop()


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_cross_site_marking_is_refused(env: LibraryEnv, server: Server, headers: dict[str, str]) -> None:
    ids = add_many(env, 2)
    before = Snapshot(env)
    for path in ("/api/mark", "/api/unmark"):
        response = server.post(path, json={"op": "process", "ids": ids}, headers=headers)
        refused(response, 403, "cross-site request refused")
    assert Snapshot(env) == before
    same = server.post("/api/mark", json={"op": "process", "ids": ids},
                       headers={"Origin": server.base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200 and same.json()["matched"] == 2


TOO_BIG = " ".join(f"title:x{n}" for n in range(1100))


@pytest.mark.parametrize(("body", "message"), [
    ('{"op": "process", "ids": [1], "query": "a"}', 'either "ids" or a "query"'),
    ('{"op": "process", "ids": [1], "all": true}', 'either "ids" or a "query"'),
    ('{"op": "process", "ids": 1}', "field 'ids' must be a list, not int"),
    ('{"op": "process", "ids": [1, "2"]}', "ids[1] must be an item id"),
    ('{"op": "process", "ids": [true]}', "ids[0] must be an item id"),
    ('{"op": "process", "ids": [1.5]}', "ids[0] must be an item id"),
    ('{"op": "process", "ids": [0]}', "ids[0] must be an item id"),
    ('{"op": "process", "ids": [-3]}', "ids[0] must be an item id"),
    ('{"op": "process", "ids": [99999999999999999999]}', "ids[0] must be an item id"),
    ('{"op": "process", "query": "", "all": "yes"}', "field 'all' must be a bool"),
    ('{"op": "process", "query": "a", "scope": "some"}', "unknown scope 'some'"),
    ('{"ids": [1]}', "missing field(s): op"),
    ('{"op": "tidy", "ids": [1]}', "unknown operation 'tidy'"),
    ('{"op": "process", "query": "\\ud800"}', "lone surrogate \\ud800"),
    ('{"op": "process", "query": "id:99999999999999999999"}', "too large for the database"),
    ('{"op": "process", "query": "unmarked:maybe"}', "invalid query"),
    (f'{{"op": "process", "query": "{TOO_BIG}"}}', "query too large for the database"),
    ("[1, 2]", "must be a JSON object"),
])
def test_malformed_marking_requests(env: LibraryEnv, server: Server, body: str, message: str) -> None:
    add_many(env, 2)
    before = Snapshot(env)
    for path in ("/api/mark", "/api/unmark"):
        response = server.post(path, data=body.encode("utf-8"), headers={"Content-Type": "application/json"})
        refused(response, 400, message)
    assert Snapshot(env) == before


# --- 2. preview ---------------------------------------------------------------------------


def messy_album(env: LibraryEnv) -> list[int]:
    """An album whose name the rules change: the preview must store nothing for it."""
    items = env.add_tracks((f"alb{n}.mp3", {"title": f"Track  {n}", "artist": "Band", "album": "  Big   Album "})
                           for n in range(3))
    env.lib.add_album(items)
    return [item.id for item in items]


def test_preview_shows_what_the_run_does_and_changes_nothing(env: LibraryEnv, server: Server) -> None:
    singles = add_many(env, 4)
    album = messy_album(env)
    missing = env.add_track("gone.ogg", {"title": "Gone", "artist": "Nobody"})
    os.remove(missing.path)
    before = Snapshot(env)

    preview = server.get("/api/preview", params={"op": "process"})
    assert preview.status_code == 200
    data = preview.json()
    assert Snapshot(env) == before, "no rows, no files, no album rows, no job"
    assert (data["op"], data["query"], data["count"]) == ("process", "", 8)
    items = {item["id"]: item for item in data["items"]}
    assert list(items) == sorted(singles + album + [missing.id])
    first = items[singles[0]]
    assert first["changes"] == {"title": ["  Song   0 ft. X", "Song 0 feat. X"]}
    assert first["file"] == os.fsdecode(env.item(singles[0]).path)
    assert first["dest"] == str(env.lib_path / "Singles" / "Artist - Song 0 feat. X.flac")
    assert items[album[0]]["changes"]["album"] == ["  Big   Album ", "Big Album"]
    assert items[album[0]]["dest"].startswith(str(env.lib_path / "Band" / "Big Album")), \
        "the destination uses the album's new name"
    assert items[missing.id]["error"] == f"file not found: {os.fsdecode(missing.path)}"
    assert items[missing.id]["dest"] is None

    # The same engine: a real run does what the preview said.
    summary = server.post("/api/process-unmarked").json()
    assert summary["status"] == "completed" and summary["succeeded"] == 7
    for item_id, shown in items.items():
        if shown["error"] is None:
            after = env.item(item_id)
            assert os.fsdecode(after.path) == shown["dest"]
            for field, (_, new) in shown["changes"].items():
                assert after[field] == new


def test_preview_pages_queries_and_scopes(env: LibraryEnv, server: Server) -> None:
    alpha = add_many(env, 5, artist="Alpha")
    beta = add_many(env, 3, artist="Beta")
    page = server.get("/api/preview", params={"op": "rename", "limit": 2, "offset": 3}).json()
    assert page["count"] == 8 and [i["id"] for i in page["items"]] == alpha[3:5]
    assert all(i["changes"] == {} for i in page["items"]), "rename does not touch tags"
    narrowed = server.get("/api/preview", params={"op": "normalize", "query": "artist:Beta"}).json()
    assert narrowed["count"] == 3 and [i["id"] for i in narrowed["items"]] == beta
    server.post("/api/mark", json={"op": "normalize", "ids": beta})
    assert server.get("/api/preview", params={"op": "normalize", "query": "artist:Beta"}).json()["count"] == 0
    done = server.get("/api/preview", params={"op": "normalize", "scope": "marked"}).json()
    assert [i["id"] for i in done["items"]] == beta and done["items"][0]["changes"]["title"][1] == "Song 0 feat. X"
    for params, message in [({"op": "tidy"}, "unknown operation"), ({"limit": "500"}, "limit must be from 1 to 200"),
                            ({"scope": "x"}, "unknown scope"), ({"query": TOO_BIG}, "query too large"),
                            ({"query": "id:99999999999999999999"}, "too large for the database")]:
        refused(server.get("/api/preview", params=params), 400, message)


def dummy_library(env: LibraryEnv, count: int) -> None:
    """``count`` items with (empty) files in place: pretend mode never reads a file."""
    root = env.temp_path / "many"
    for n in range(count // 1000 + 1):
        (root / f"{n:03d}").mkdir(parents=True)
    rows = []
    for n in range(count):
        path = root / f"{n // 1000:03d}" / f"{n:05d}.mp3"
        path.touch()
        rows.append((f"  Title   {n} ft. Guest", f"Artist {n % 300}", f"Album {n // 12}", f"Artist {n % 300}",
                     n % 12 + 1, "MP3", os.fsencode(path), time.time(), 0))
    with sqlite3.connect(env.settings["library"]) as conn:
        conn.executemany("INSERT INTO items (title, artist, album, albumartist, track, format, path, added, mtime)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def test_first_preview_page_of_20000_items_is_fast(env: LibraryEnv, server: Server) -> None:
    dummy_library(env, 20_000)
    timings = []
    for _ in range(3):
        began = time.monotonic()
        data = server.get("/api/preview", params={"op": "process"}).json()
        timings.append(time.monotonic() - began)
    assert data["count"] == 20_000 and len(data["items"]) == 50
    assert data["items"][0]["changes"]["title"][1] == "Title 0 feat. Guest"
    print(f"preview, first page of 20 000: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
    assert min(timings) < 1.0, timings


# --- 3. a job's record ----------------------------------------------------------------------


def test_a_jobs_record_lists_failures_first(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 8)
    gone = [env.item(ids[5]), env.item(ids[6])]
    for item in gone:
        os.remove(item.path)
    summary = server.post("/api/rename-unmarked").json()
    job = summary["job"]
    assert (summary["succeeded"], summary["failed"]) == (6, 2)

    record = server.get(f"/api/jobs/{job}/items").json()
    assert record["job"] == job and record["count"] == 8 and record["compacted"] is False
    assert [i["item_id"] for i in record["items"]] == [ids[5], ids[6], *ids[:5], ids[7]], "failures first"
    assert record["items"][0]["error"] == f"file not found: {os.fsdecode(gone[0].path)}"
    assert record["items"][2]["dest"].startswith(str(env.lib_path)) and record["items"][2]["success"]
    failed = server.get(f"/api/jobs/{job}/items", params={"status": "failed"}).json()
    assert [i["item_id"] for i in failed["items"]] == [ids[5], ids[6]] and failed["count"] == 2
    succeeded = server.get(f"/api/jobs/{job}/items", params={"status": "succeeded", "limit": 2, "offset": 1}).json()
    assert succeeded["count"] == 6 and [i["item_id"] for i in succeeded["items"]] == ids[1:3]
    assert server.get(f"/api/jobs/{job}/items", params={"status": "skipped"}).json()["count"] == 0

    refused(server.get(f"/api/jobs/{job}/items", params={"status": "lost"}), 400, "status must be one of")
    refused(server.get(f"/api/jobs/{job}/items", params={"limit": "0"}), 400, "limit must be from 1")
    refused(server.get("/api/jobs/4242/items"), 404, "no job '4242'")

    # Over the store's budget, old records keep their summary and failures only.
    JobStore(store_path(env.lib)).keep_within(1)
    compacted = server.get(f"/api/jobs/{job}/items").json()
    assert compacted["compacted"] is True and compacted["count"] == 2
    assert [i["item_id"] for i in compacted["items"]] == [ids[5], ids[6]]
    assert server.get(f"/api/jobs/{job}").json()["failed"] == 2


# --- 5. hosts -----------------------------------------------------------------------------


def test_dns_rebinding_is_refused(env: LibraryEnv, server: Server) -> None:
    """A page on evil.example re-pointed at 127.0.0.1: same-origin as far as the
    browser knows (Host and Origin agree); only the Host header gives it away."""
    add_many(env, 3)
    before = Snapshot(env)
    rebound = {"Host": "evil.example", "Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}
    refused(server.post("/api/jobs", json={"op": "rename"}, headers=rebound), 403, "does not answer for the host")
    refused(server.post("/api/rename-unmarked", headers=rebound), 403, "does not answer for the host")
    refused(server.post("/api/mark", json={"op": "process", "query": "", "all": True}, headers=rebound), 403,
            "unmarked: {allowed_hosts")
    assert Snapshot(env) == before, "nothing started, nothing marked"


EVERY_ROUTE = [
    ("GET", "/unmarked"), ("GET", "/unmarked/static/unmarked.js"), ("GET", "/api/unmarked"),
    ("GET", "/api/preview"), ("GET", "/api/jobs"), ("GET", "/api/jobs/1"), ("GET", "/api/jobs/1/items"),
    ("GET", "/api/jobs/1/events"), ("POST", "/api/jobs"), ("POST", "/api/jobs/1/cancel"),
    ("POST", "/api/process-unmarked"), ("POST", "/api/mark"), ("POST", "/api/unmark"),
]


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8337", "10.0.0.7", "localhost.evil.example",
                                  "127.0.0.1.evil.example", "[::2]:80", ""])
def test_every_route_refuses_other_hosts(env: LibraryEnv, server: Server, host: str) -> None:
    for method, path in EVERY_ROUTE:
        response = requests.request(method, server.url(path), headers={"Host": host}, timeout=30)
        refused(response, 403, "does not answer for the host")
    assert job_rows(env) == []


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "app.localhost", "127.0.0.1", "127.1.2.3",
                                  "[::1]", "[::ffff:127.0.0.1]"])
def test_loopback_names_and_addresses_are_served(env: LibraryEnv, server: Server, host: str) -> None:
    response = requests.get(server.url("/api/unmarked"), headers={"Host": f"{host}:{server.port}"}, timeout=30)
    assert response.status_code == 200
    page = requests.get(server.url("/unmarked"), headers={"Host": host}, timeout=30)
    assert page.status_code == 200


def test_allowed_hosts_and_web_host(env: LibraryEnv) -> None:
    """A proxy passing a public name on: listed names are served, others not."""
    web_settings(env)
    env.configure(unmarked={"allowed_hosts": ["music.example.org", ".home.arpa"]})
    ids = add_many(env, 2)
    server = beet_web(env)
    try:
        public = {"Host": "music.example.org", "Origin": "https://music.example.org"}
        assert server.get("/unmarked", headers={"Host": "music.example.org"}).status_code == 200
        assert server.post("/api/mark", json={"op": "rename", "ids": ids}, headers=public).json()["matched"] == 2
        for host in ("home.arpa", "nas.home.arpa:8080"):
            assert server.get("/api/jobs", headers={"Host": host}).status_code == 200, host
        for host in ("example.org", "evil.music.example.org", "home.arpa.evil.example"):
            refused(server.get("/api/jobs", headers={"Host": host}), 403, "does not answer for the host")
    finally:
        server.stop()
    # web.host is a name the server is meant to be reached by, whatever it is bound to.
    env.configure(web={"readonly": False, "host": "jukebox.lan"})
    server = gunicorn(env)
    try:
        assert server.get("/api/jobs", headers={"Host": "jukebox.lan:8337"}).status_code == 200
        refused(server.get("/api/jobs", headers={"Host": "jukebox.lan.evil.example"}), 403, "does not answer")
    finally:
        server.stop()


def test_a_server_bound_to_every_interface_answers_for_addresses(env: LibraryEnv) -> None:
    web_settings(env)
    server = beet_web_on(env, "0.0.0.0")
    try:
        for host in ("192.0.2.10", "192.0.2.10:8337", "[2001:db8::1]:8337"):
            assert server.get("/api/jobs", headers={"Host": host}).status_code == 200, host
        refused(server.get("/api/jobs", headers={"Host": "evil.example"}), 403, "does not answer for the host")
    finally:
        server.stop()


def beet_web_on(env: LibraryEnv, bind: str) -> Server:
    from .libenv import BEET
    from .servers import free_port

    port = free_port()
    return Server(env, [BEET, "web", bind, str(port)], port)


# --- 6. bad input is a 400, and leaves no job row ---------------------------------------------


@pytest.mark.parametrize(("body", "message"), [
    (f'{{"op": "process", "query": "{TOO_BIG}"}}', "query too large for the database"),
    (f'{{"op": "process", "query": "{" , ".join(f"title:x{n}" for n in range(1100))}"}}', "too large"),
    ('{"op": "rename", "query": "id:99999999999999999999"}', "a number in it is too large for the database"),
    ('{"op": "rename", "query": "\\ud800"}', "lone surrogate \\ud800"),
    ('{"op": "rename", "query": "artist:\\udfff x"}', "lone surrogate \\udfff"),
])
def test_bad_job_requests_are_400_and_leave_no_job(env: LibraryEnv, server: Server, body: str, message: str) -> None:
    add_many(env, 2)
    before = Snapshot(env)
    for path in ("/api/jobs", "/api/rename-unmarked", "/api/normalize-unmarked?stream=true"):
        data = body if path == "/api/jobs" else body.replace('"op": "process", ', "").replace('"op": "rename", ', "")
        response = server.post(path, data=data.encode(), headers={"Content-Type": "application/json"})
        refused(response, 400, message)
    assert Snapshot(env) == before
    assert server.get("/api/jobs").json() == {"jobs": []}
    assert server.post("/api/jobs", json={"op": "rename"}).status_code == 202, "the library was not left claimed"


@pytest.mark.parametrize("path", ["/api/unmarked", "/api/preview"])
@pytest.mark.parametrize(("query", "message"), [
    (TOO_BIG, "query too large for the database"),
    ("id:99999999999999999999", "too large for the database"),
])
def test_bad_queries_on_reads_are_400(env: LibraryEnv, server: Server, path: str, query: str, message: str) -> None:
    add_many(env, 2)
    refused(server.get(path, params={"query": query}), 400, message)


@pytest.mark.parametrize("path", ["/api/unmarked", "/api/preview"])
def test_a_lone_surrogate_in_a_read_query_matches_nothing(env: LibraryEnv, server: Server, path: str) -> None:
    """A URL cannot carry a lone surrogate: its UTF-8 bytes arrive as
    replacement characters, a query that matches no track (not an error)."""
    add_many(env, 2)
    response = server.get(path, params={"query": "\ud800".encode("utf-8", "surrogatepass")})
    assert response.status_code == 200 and response.json()["count"] == 0


# --- 7. a stream resumed past the end ends ---------------------------------------------------


def test_a_stream_resumed_past_the_end_ends_with_the_job(env: LibraryEnv, server: Server) -> None:
    """While the job runs, such a stream has nothing to send and says when to
    ask again (every response is bounded); once the job has ended, 204."""
    add_many(env, 4)
    with library_write_lock(env) as gate:  # the job runs but cannot finish while this is held
        job = server.post("/api/jobs", json={"op": "rename"}).json()["job"]
        assert running_job(env)["job"] == job
        began = time.monotonic()
        first = requests.get(server.url(f"/api/jobs/{job}/events"), headers={"Last-Event-ID": "1000"}, timeout=10)
        assert time.monotonic() - began < 5, "a bounded response"
        assert first.status_code == 200 and b"event:" not in first.content, "no event is numbered above 1000"
        assert first.content.endswith(b"retry: 1000\n\n"), first.content
        gate.release()
        wait_status(server, job, {"completed"})
    again = requests.get(server.url(f"/api/jobs/{job}/events"), headers={"Last-Event-ID": "1000"}, timeout=10)
    assert again.status_code == 204, "nothing is left to send"
    assert server.get(f"/api/jobs/{job}/events", headers={"Last-Event-ID": "6"}).status_code == 204
