"""Request bodies of any shape and size: a 400 that names the limit, never a 500.

Before: a deeply nested JSON body made Python's parser raise RecursionError,
answered 500 by ``/api/mark``, ``/api/jobs`` and ``/api/process-unmarked``
(and by beets' own ``PATCH /item/ID``). The fuzz below sends JSON of any shape
and depth to every route of ours that reads a body, over a real socket.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from beetsplug.unmarked.web.validate import MAX_BODY, MAX_DEPTH

from .fuzzing import FUZZ, Library, values
from .libenv import LibraryEnv
from .servers import Server

ROUTES = ["/api/mark", "/api/unmark", "/api/jobs", "/api/process-unmarked", "/api/jobs/1/cancel"]


def refused(response: requests.Response, text: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    assert text in response.json()["error"], response.json()


@pytest.mark.parametrize("path", ROUTES)
def test_deep_nesting_is_a_400_naming_the_limit(env: LibraryEnv, server: Server, path: str) -> None:
    for body in ("[" * 100_000 + "]" * 100_000, '{"op": ' * 5000 + "1" + "}" * 5000):
        refused(server.post(path, data=body, headers={"Content-Type": "application/json"}),
                f"nests more than {MAX_DEPTH} levels")
    shallow = '{"op": "process", "ids": [1], "query": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}'
    assert server.post(path, data=shallow).status_code != 500, "brackets inside strings do not count"


def test_beets_own_patch_gets_the_same_limit(env: LibraryEnv, server: Server) -> None:
    env.add_tracks([("a.flac", {"title": "A"})])
    refused(requests.patch(server.url("/item/1"), data="[" * 100_000, timeout=30,
                           headers={"Content-Type": "application/json"}), "nests more than")


@pytest.mark.parametrize("path", ["/api/mark", "/item/1"])
def test_a_body_over_the_size_limit_is_a_400(env: LibraryEnv, server: Server, path: str) -> None:
    env.add_tracks([("a.flac", {"title": "A"})])
    ids = list(range(1, MAX_BODY // 4))
    body = json.dumps({"op": "process", "ids": ids})
    assert len(body) > MAX_BODY
    method = requests.post if path.startswith("/api") else requests.patch
    refused(method(server.url(path), data=body, timeout=60), f"at most {MAX_BODY} bytes")
    assert server.post("/api/mark", json={"op": "process", "ids": ids[:90_000]}).status_code == 200, \
        "100 000 ids fit"


def nested(depth: int, kind: str, inner: Any) -> str:
    """JSON text ``inner`` wrapped ``depth`` times in arrays or objects."""
    opening, closing = ("[", "]") if kind == "[" else ('{"k": ', "}")
    return opening * depth + json.dumps(inner) + closing * depth


deep_texts = st.one_of(
    values.map(json.dumps),
    st.builds(nested, st.integers(0, 3000), st.sampled_from(["[", "{"]), values),
    st.recursive(values, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=2),
                 max_leaves=40).map(json.dumps),
)
bodies = st.one_of(
    deep_texts,
    st.builds(lambda op, field, text: f'{{"op": "{op}", "{field}": {text}}}',
              st.sampled_from(["process", "rename"]), st.sampled_from(["ids", "query", "force", "all"]), deep_texts),
)


@FUZZ
@given(path=st.sampled_from(ROUTES), body=bodies)
def test_json_of_any_shape_is_never_a_500(library: Library, path: str, body: str) -> None:
    """Our routes only: what beets' own PATCH does with a body within the
    limits is beets' (``null`` or a list there is a 500 in beets itself)."""
    library.check(lambda: library.server.post(path, data=body, headers={"Content-Type": "application/json"}))
