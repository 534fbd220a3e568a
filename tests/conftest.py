"""Shared fixtures: a real on-disk beets library per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .fuzzing import Library
from .libenv import LibraryEnv
from .servers import RUNNING, Server, beet_web, web_settings
from .shared import add_many
from .signals import sigint_handled

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags a sandboxed machine with a closed network needs (no background
# connections, no sandbox as root).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def env() -> Iterator[LibraryEnv]:
    with LibraryEnv() as library_env:
        yield library_env


@pytest.fixture
def server(env: LibraryEnv) -> Iterator[Server]:
    """`beet web` on a loopback port, with writes allowed, for this test's library."""
    web_settings(env)
    srv = beet_web(env)
    yield srv
    srv.stop()


@pytest.fixture
def sigint_delivered() -> Iterator[None]:
    """For tests that send SIGINT: the signal is not ignored, here or in the
    children the test starts, even when pytest runs as ``nohup ... &``."""
    with sigint_handled():
        yield


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian chromium, driven by Playwright (one per test module)."""
    assert os.path.exists(CHROMIUM), "Debian chromium is required (apt-get install chromium)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")  # "1,234"
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def library() -> Iterator[Library]:
    """A live `beet web` over four tracks, for the property-based request tests (one per module)."""
    with LibraryEnv() as env:
        add_many(env, 4)
        web_settings(env)
        server = beet_web(env)
        yield Library(env, server)
        server.stop()


def pytest_sessionfinish() -> None:
    """No server outlives the run, whatever a failing test left behind."""
    for server in list(RUNNING):
        server.stop()
