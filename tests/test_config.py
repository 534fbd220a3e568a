"""Every option of ``unmarked:`` is checked when the plugin loads: one line naming it, no traceback."""

from __future__ import annotations

import math
import os
import subprocess
from typing import Any

import confuse
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beetsplug.unmarked.config import CHECKS, DEFAULTS, check
from beetsplug.unmarked.errors import ConfigError
from beetsplug.unmarked.runner import JobConfig

from .libenv import LibraryEnv
from .servers import GUNICORN, free_port, web_settings

BAD = [
    ("job_history_mb", math.nan, "a number, 1 or more"),
    ("job_history_mb", math.inf, "a number, 1 or more"),
    ("job_history_mb", -5, "a number, 1 or more"),
    ("batch_size", 2.5, "a whole number, 1 or more"),
    ("batch_size", 0, "a whole number, 1 or more"),
    ("batch_size", True, "a whole number, 1 or more"),
    ("batch_seconds", -1.0, "a number, 0 or more"),
    ("stream_window", "soon", "a number, from 0 to 10"),
    ("stream_retry", 0, "a number, from 0.1 to 60"),
    ("auto", "maybe", "yes or no"),
    ("allowed_hosts", [1, 2], "a list of names"),
]


@pytest.mark.parametrize(("name", "value", "accepts"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_beet_refuses_a_bad_value_in_one_line(env: LibraryEnv, name: str, value: Any, accepts: str) -> None:
    """Before: `.nan`/`.inf` crashed every command with a traceback; 2.5 was taken as 2."""
    env.configure(unmarked={name: value})
    result = env.beet("ls", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"unmarked.{name} must be {accepts}" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_refuses_a_bad_value_in_one_line(env: LibraryEnv) -> None:
    """``create_app`` loads the plugin too: gunicorn stops with the message
    instead of a traceback per worker it keeps booting."""
    web_settings(env)
    env.configure(unmarked={"batch_size": 2.5})
    result = subprocess.run([GUNICORN, "-b", f"127.0.0.1:{free_port()}", "beetsplug.unmarked.wsgi:create_app()"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "BEETSDIR": str(env.temp_path), "HOME": str(env.temp_path)})
    assert result.returncode != 0
    assert "unmarked.batch_size must be a whole number, 1 or more, not 2.5" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def view(values: dict[str, Any]) -> confuse.ConfigView:
    config = confuse.Configuration("unmarked-test", read=False)
    config.add(DEFAULTS)
    config.set(values)
    return config


config_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)


@pytest.mark.fast
@settings(max_examples=400, deadline=None)
@given(values=st.dictionaries(st.sampled_from(sorted(CHECKS)), config_values, max_size=4))
def test_any_value_is_refused_by_name_or_usable(values: dict[str, Any]) -> None:
    config = view(values)
    try:
        check(config)
    except ConfigError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert any(f"unmarked.{name} must be" in refused for name in values), refused
        return
    job = JobConfig.from_plugin(config)  # everything accepted can be built, nothing rounded
    assert job.settings.batch_size == config["batch_size"].get()
    assert math.isfinite(job.settings.batch_seconds) and job.settings.batch_seconds >= 0
    assert job.history_bytes >= 1 << 20


@pytest.mark.fast
def test_the_defaults_pass_their_own_checks() -> None:
    check(view({}))
    assert set(CHECKS) == set(DEFAULTS), "every option has a check"
