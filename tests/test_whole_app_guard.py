"""With this plugin loaded, beets' own routes get the same guard as ours.

Jobs need ``web.readonly: no``, which also opens beets' own ``DELETE`` and
``PATCH`` of items and albums. Before: ``DELETE /item/1`` with ``Origin:
http://evil.example`` answered 200 and deleted the item, and beets' routes
answered for any ``Host`` (DNS rebinding).
"""

from __future__ import annotations

import beets
import flask
import pytest
import requests

from beetsplug.unmarked.web.guard import cross_site_reason

from .libenv import LibraryEnv
from .servers import Server, beet_web, web_settings
from .shared import add_many

CROSS_SITE = [
    {"Origin": "http://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
]


def refused(response: requests.Response, text: str) -> None:
    assert response.status_code == 403, (response.status_code, response.text[:300])
    assert text in response.json()["error"]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=["origin", "sec-fetch-site", "both"])
def test_beets_own_changes_from_another_site_are_refused(env: LibraryEnv, server: Server,
                                                          headers: dict[str, str]) -> None:
    ids = add_many(env, 2)
    album = env.lib.add_album([env.item(ids[1])])
    refused(requests.delete(server.url(f"/item/{ids[0]}"), headers=headers, timeout=30), "cross-site")
    refused(requests.patch(server.url(f"/item/{ids[0]}"), json={"title": "x"}, headers=headers, timeout=30),
            "cross-site")
    refused(requests.delete(server.url(f"/album/{album.id}"), headers=headers, timeout=30), "cross-site")
    assert env.beet_ids() == sorted(ids), "nothing deleted"
    assert "x" not in env.beet("ls", "-f", "$title").stdout.split()


def test_beets_own_changes_from_this_site_still_work(env: LibraryEnv, server: Server) -> None:
    ids = add_many(env, 2)
    same = {"Origin": server.base, "Sec-Fetch-Site": "same-origin"}
    assert requests.patch(server.url(f"/item/{ids[0]}"), json={"title": "Renamed"}, headers=same,
                          timeout=30).status_code == 200
    assert requests.delete(server.url(f"/item/{ids[1]}"), timeout=30).status_code == 200  # curl: no Origin
    assert env.beet_ids() == [ids[0]]
    assert env.beet("ls", "-f", "$title").stdout.strip() == "Renamed"


@pytest.mark.parametrize("path", ["/", "/item/", "/item/1", "/album/", "/stats", "/item/query/a", "/nowhere"])
def test_beets_own_routes_refuse_other_hosts(env: LibraryEnv, server: Server, path: str) -> None:
    add_many(env, 1)
    refused(requests.get(server.url(path), headers={"Host": "evil.example"}, timeout=30),
            "does not answer for the host")
    rebound = {"Host": "evil.example", "Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}
    refused(requests.delete(server.url("/item/1"), headers=rebound, timeout=30), "does not answer for the host")
    assert env.beet_ids() == [1]


def test_a_lan_name_is_allowed_by_config(env: LibraryEnv) -> None:
    web_settings(env)
    env.configure(unmarked={"allowed_hosts": ["music.lan"]})
    ids = add_many(env, 1)
    server = beet_web(env)
    try:
        lan = {"Host": "music.lan:8337"}
        assert requests.get(server.url(f"/item/{ids[0]}"), headers=lan, timeout=30).status_code == 200
        refused(requests.get(server.url(f"/item/{ids[0]}"), headers={"Host": "other.lan"}, timeout=30),
                "does not answer for the host")
    finally:
        server.stop()


@pytest.mark.fast
def test_web_cors_origins_may_change() -> None:
    """A user who set ``web.cors`` let that origin in: the guard respects it.
    (In-process: ``beet web`` with cors needs flask-cors, not a dependency.)"""
    beets.config["web"]["cors"] = "http://player.example, http://other.example"
    try:
        app = flask.Flask(__name__)
        for origin, refused_ in [("http://player.example", False), ("http://other.example/", False),
                                 ("http://evil.example", True)]:
            headers = {"Origin": origin, "Sec-Fetch-Site": "cross-site"}
            with app.test_request_context("/item/1", method="DELETE", headers=headers):
                assert (cross_site_reason() is not None) == refused_, origin
    finally:
        beets.config["web"]["cors"] = ""
