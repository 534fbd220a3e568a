"""Property-based requests against a live `beet web`: never a 500, never a change when refused."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import add_many

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))

# What an HTTP client can send at all: printable ASCII without leading space.
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.lstrip)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
queries = st.one_of(st.text(max_size=40), st.sampled_from([
    "path:\x00", "title::(", "year:abc..", "added:2020..xyz", "\"unclosed", "unmarked:", "^", ",", "id:1e999",
    "length:1:2", "path:/etc", "artist:Artist unmarked:true",
]))
bodies = st.one_of(
    st.binary(max_size=80),
    values.map(json.dumps),
    st.fixed_dictionaries({}, optional={
        "op": st.one_of(st.sampled_from(["process", "rename", "normalize"]), values),
        "query": st.one_of(queries, values),
        "force": st.one_of(st.booleans(), values),
        "junk": values,
    }).map(json.dumps),
)
fuzz_headers = st.fixed_dictionaries({}, optional={
    "Origin": header_text, "Sec-Fetch-Site": header_text, "Last-Event-ID": header_text, "Content-Type": header_text,
})


class Library:
    """The observable state a refused request must not change."""

    def __init__(self, env: LibraryEnv, server: Server) -> None:
        self.env, self.server = env, server

    def snapshot(self) -> tuple[Any, ...]:
        with sqlite3.connect(self.env.settings["library"]) as conn:
            markers = conn.execute("SELECT entity_id, key, value FROM item_attributes ORDER BY 1, 2").fetchall()
            paths = conn.execute("SELECT id, path, title FROM items ORDER BY id").fetchall()
        jobs = [(j["job"], j["status"]) for j in self.server.get("/api/jobs").json()["jobs"]]
        return markers, paths, jobs

    def settle(self) -> None:
        """Let a job that an accepted request started finish."""
        deadline = time.monotonic() + 30
        while any(j["status"] in ("queued", "running") for j in self.server.get("/api/jobs").json()["jobs"]):
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(0.05)

    def check(self, send: Any) -> requests.Response:
        before = self.snapshot()
        response = send()
        assert response.status_code < 500, (response.status_code, response.text[:500])
        if response.status_code >= 400:
            assert response.headers["Content-Type"].startswith("application/json") or response.status_code in (404, 405)
            assert self.snapshot() == before, "a refused request changed something"
        else:
            self.settle()
        return response


@pytest.fixture(scope="module")
def library() -> Iterator[Library]:
    with LibraryEnv() as env:
        add_many(env, 4)
        web_settings(env)
        server = beet_web(env)
        yield Library(env, server)
        server.stop()


@FUZZ
@given(body=bodies, headers=fuzz_headers)
def test_job_creation(library: Library, body: Any, headers: dict[str, str]) -> None:
    library.check(lambda: library.server.post("/api/jobs", data=body, headers=headers))


@FUZZ
@given(name=st.sampled_from(["process", "rename", "normalize", "tidy", ""]),
       stream=st.sampled_from(["", "true", "1", "x"]), body=bodies, headers=fuzz_headers)
def test_operation_calls(library: Library, name: str, stream: str, body: Any, headers: dict[str, str]) -> None:
    path = f"/api/{name}-unmarked" + (f"?stream={stream}" if stream else "")

    def send() -> requests.Response:
        response = library.server.post(path, data=body, headers=headers, stream=True)
        response.content  # read streams to their end (the job finishes)
        return response

    library.check(send)


@FUZZ
@given(job=st.one_of(st.integers(-5, 10**20).map(str), st.text(max_size=20)),
       action=st.sampled_from(["", "/cancel", "/events"]), headers=fuzz_headers,
       after=st.one_of(st.none(), header_text))
@example(job="\u00b2", action="", headers={}, after=None)  # '²'.isdigit() is true; int() refuses it
@example(job=str(10**20), action="", headers={}, after=None)  # too large for SQLite
@example(job="1", action="/events", headers={}, after="\u0661")  # an Arabic-Indic digit
def test_job_ids_and_resume_points(library: Library, job: str, action: str, headers: dict[str, str],
                                   after: str | None) -> None:
    path = f"/api/jobs/{quote(job, safe='')}{action}" + ("" if after is None else f"?after={quote(after)}")
    if action == "/cancel":
        library.check(lambda: library.server.post(path, headers=headers))
    else:
        library.check(lambda: library.server.get(path, headers=headers))  # a finished job's stream ends


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["op", "query", "limit", "offset", "x"]),
                              st.one_of(queries, header_text), max_size=4))
def test_listing_parameters(library: Library, params: dict[str, str]) -> None:
    library.check(lambda: library.server.get("/api/unmarked", params=params))


def test_every_post_is_refused_on_a_read_only_server() -> None:
    with LibraryEnv() as env:
        add_many(env, 3)
        web_settings(env, readonly=True)
        server = beet_web(env)
        library = Library(env, server)
        try:
            @FUZZ
            @given(path=st.sampled_from(["/api/jobs", "/api/process-unmarked", "/api/rename-unmarked?stream=true",
                                         "/api/normalize-unmarked", "/api/jobs/1/cancel"]),
                   body=bodies, headers=fuzz_headers)
            def refused(path: str, body: Any, headers: dict[str, str]) -> None:
                response = library.check(lambda: server.post(path, data=body, headers=headers))
                assert response.status_code == 403

            refused()
        finally:
            server.stop()
