"""What the property-based request tests share: the strategies, and a live
`beet web` whose observable state a refused request must not change."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .libenv import LibraryEnv
from .servers import Server

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

    def wait_for_jobs(self) -> None:
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
            self.wait_for_jobs()
        return response
