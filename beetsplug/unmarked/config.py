"""The ``unmarked:`` section: every option's default and what it accepts.

Defaults live here and nowhere else (the engine's and the rules' dataclasses
read them from here). ``check`` runs when the plugin is loaded, before any
command or server starts: a value the code cannot use (a fraction where a
count is expected, ``.nan``, a negative budget, a word where a number goes)
stops beets with one line that names the option and what it accepts, never a
traceback or a silently rounded value.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    import confuse

DEFAULTS: dict[str, Any] = {
    # Import hook: process items as they are imported.
    "auto": False,
    # Text fields the normalize rules touch (single- and multi-valued).
    "fields": [
        "title",
        "artist",
        "artists",
        "artist_sort",
        "artists_sort",
        "artist_credit",
        "album",
        "albumartist",
        "albumartists",
        "albumartist_sort",
        "albumartists_sort",
        "albumartist_credit",
        "composers",
        "composer_sort",
        "lyricists",
        "arrangers",
        "genres",
        "grouping",
        "disctitle",
        "work",
    ],
    # Rules, each on or off.
    "whitespace": True,
    "unicode_nfc": True,
    "feat": True,
    "feat_format": "feat.",
    "quotes": False,
    "titlecase": False,
    "titlecase_fields": ["title", "album"],
    # Commit bounds: one library transaction per this many items or seconds.
    "batch_size": 200,
    "batch_seconds": 1.0,
    # Web: how long one SSE response may follow a job (seconds, any server);
    # then it ends with `retry:` and the browser resumes with Last-Event-ID.
    # 0: each response carries what has happened since the last one.
    "stream_window": 0.0,
    # Web: seconds a follower waits before it asks for more events.
    "stream_retry": 1.0,
    # Web: Host names the server answers for besides localhost, loopback
    # addresses and web.host (e.g. a LAN name, or the public name a proxy
    # passes on); any other Host gets 403, which is what stops DNS rebinding.
    "allowed_hosts": [],
    # Job store (jobs, events, journal) size budget in MiB: finished jobs beyond
    # it are compacted to their summary and failures, then dropped, oldest first.
    "job_history_mb": 64,
}

MAX_STREAM_WINDOW = 10.0  # below gunicorn's default --timeout (30 s), which kills a sync worker
MIN_STREAM_RETRY = 0.1  # each follower asks this often while a job runs: not a flood
MAX_STREAM_RETRY = 60.0


def _yes_no(value: Any) -> str | None:
    return None if isinstance(value, bool) else "yes or no"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) else "a text"


def _names(value: Any) -> str | None:
    """A list of names, or one string of names separated by spaces (as confuse's as_str_seq)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return None
    return "a list of names"


def _count(value: Any) -> str | None:
    if type(value) is int and value >= 1:
        return None
    return "a whole number, 1 or more"


def _number(low: float, high: float | None = None) -> Callable[[Any], str | None]:
    """A finite number (int or float, not a bool) within bounds."""
    accepts = f"a number, {low:g} or more" if high is None else f"a number, from {low:g} to {high:g}"

    def check(value: Any) -> str | None:
        if type(value) not in (int, float) or not math.isfinite(value):
            return accepts
        if value < low or (high is not None and value > high):
            return accepts
        return None

    return check


CHECKS: dict[str, Callable[[Any], str | None]] = {
    "auto": _yes_no,
    "fields": _names,
    "whitespace": _yes_no,
    "unicode_nfc": _yes_no,
    "feat": _yes_no,
    "feat_format": _text,
    "quotes": _yes_no,
    "titlecase": _yes_no,
    "titlecase_fields": _names,
    "batch_size": _count,
    "batch_seconds": _number(0),
    "stream_window": _number(0, MAX_STREAM_WINDOW),
    "stream_retry": _number(MIN_STREAM_RETRY, MAX_STREAM_RETRY),
    "allowed_hosts": _names,
    "job_history_mb": _number(1),
}


def check(config: confuse.ConfigView) -> None:
    """Every option of the section, or a ConfigError naming the first bad one."""
    for name, accepts in CHECKS.items():
        value = config[name].get()
        wrong = accepts(value)
        if wrong:
            raise ConfigError(f"invalid configuration: unmarked.{name} must be {wrong}, not {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
