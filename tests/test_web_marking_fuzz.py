"""Fuzzing the second round's endpoints: never a 500, and a refused request changes nothing.

Same harness as test_fuzz.py (a real `beet web`, a snapshot of the library's
markers, paths and jobs around every refused request).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from .fuzzing import FUZZ, Library, fuzz_headers, header_text, queries, values

ids = st.one_of(
    st.lists(st.one_of(st.integers(-3, 12), st.integers(-(2**70), 2**70), st.booleans(), st.floats(),
                       st.text(max_size=3)), max_size=6),
    values,
)
mark_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={
        "op": st.one_of(st.sampled_from(["process", "rename", "normalize"]), values),
        "ids": ids,
        "query": st.one_of(queries, values),
        "all": st.one_of(st.booleans(), values),
        "scope": st.one_of(st.sampled_from(["unmarked", "marked", "all"]), values),
        "junk": values,
    }).map(json.dumps),
    st.binary(max_size=60),
)


@FUZZ
@given(path=st.sampled_from(["/api/mark", "/api/unmark"]), body=mark_bodies, headers=fuzz_headers)
@example(path="/api/mark", body='{"op": "process", "query": "\\ud800"}', headers={})
@example(path="/api/mark", body='{"op": "process", "ids": [99999999999999999999]}', headers={})
@example(path="/api/unmark", body='{"op": "rename", "query": "id:99999999999999999999"}', headers={})
def test_marking(library: Library, path: str, body: Any, headers: dict[str, str]) -> None:
    library.check(lambda: library.server.post(path, data=body, headers=headers))


params = st.dictionaries(st.sampled_from(["op", "query", "limit", "offset", "scope", "status", "x"]),
                         st.one_of(queries, header_text), max_size=4)


@FUZZ
@given(path=st.sampled_from(["/api/preview", "/api/unmarked", "/api/jobs/1/items", "/api/jobs/99/items"]),
       params=params, headers=fuzz_headers)
@example(path="/api/preview", params={"query": "id:99999999999999999999"}, headers={})
def test_reading(library: Library, path: str, params: dict[str, str], headers: dict[str, str]) -> None:
    library.check(lambda: library.server.get(path, params=params, headers=headers))


@FUZZ
@given(host=st.one_of(header_text, st.sampled_from(["localhost", "127.0.0.1", "[::1]", "evil.example", "::1", "[", "]:"
                                                  ])),
       path=st.sampled_from(["/unmarked", "/api/jobs", "/api/preview", "/api/mark"]))
@example(host=".", path="/unmarked")
def test_host_headers(library: Library, host: str, path: str) -> None:
    method = "post" if path == "/api/mark" else "get"
    send = getattr(library.server, method)
    kwargs: dict[str, Any] = {"headers": {"Host": host}}
    if method == "post":
        kwargs["json"] = {"op": "rename", "ids": [1]}
    before = library.snapshot()
    response = send(path, **kwargs)
    assert response.status_code < 500, (host, response.status_code, response.text[:300])
    if response.status_code >= 400:
        # Hosts werkzeug finds malformed ('.', '[') never reach a route: its own 400 (HTML).
        json_error = response.headers["Content-Type"].startswith("application/json")
        assert json_error or response.status_code == 400, (host, response.status_code)
        assert library.snapshot() == before, "a refused request changed something"
    else:
        library.wait_for_jobs()
