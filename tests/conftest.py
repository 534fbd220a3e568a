"""Shared fixtures: a real on-disk beets library per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .libenv import LibraryEnv


@pytest.fixture
def env() -> Iterator[LibraryEnv]:
    with LibraryEnv() as library_env:
        yield library_env
