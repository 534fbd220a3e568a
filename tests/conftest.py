"""Shared fixtures: a real on-disk beets library per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .libenv import LibraryEnv
from .servers import RUNNING, Server, beet_web, web_settings
from .signals import sigint_handled


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


def pytest_sessionfinish() -> None:
    """No server outlives the run, whatever a failing test left behind."""
    for server in list(RUNNING):
        server.stop()
