"""Holding Ctrl-C and stop signals for the few milliseconds that must not be cut."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM or SIGHUP handler that raises) while files
    are put in order, a commit is flagged, or a batch is counted and
    reported; deliver it afterwards. Only the main thread receives signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = handler
            signal.signal(signum, lambda number, frame: caught.append((number, frame)))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            first, frame = caught[0]
            previous[first](first, frame)
