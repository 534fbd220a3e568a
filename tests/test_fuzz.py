"""Property-based requests against a live `beet web`: never a 500, never a change when refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from hypothesis import example, given
from hypothesis import strategies as st

from .fuzzing import FUZZ, Library, bodies, fuzz_headers, header_text, queries
from .libenv import LibraryEnv
from .servers import beet_web, web_settings
from .shared import add_many


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
