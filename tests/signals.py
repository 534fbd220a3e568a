"""Ctrl-C tests must arrange that their SIGINT can land.

A shell starts a background job (``pytest ... &``, ``nohup pytest ... &``)
with SIGINT ignored, and an ignored signal stays ignored across fork and exec:
every ``beet`` such a test started ignored its Ctrl-C (exit 0 instead of 130,
"0 of 20 runs were interrupted"), and so did pytest itself. The product was
right (an ignored signal stays ignored); the tests did not set up what they
test. A signal *handled* in the parent is reset to the default in an exec'd
child, so the ``sigint_delivered`` fixture (conftest.py) gives the test
process Python's own handler for the test's length, and each test checks its
child before it sends the signal.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def sigint_handled() -> Iterator[None]:
    """This process raises KeyboardInterrupt on SIGINT, and children it
    starts meanwhile get SIGINT's default action, whatever we inherited."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:  # None: set outside Python, cannot be put back
            signal.signal(signal.SIGINT, previous)


def sigint_ignored(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT (its SigIgn mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    raise AssertionError(f"no SigIgn line for pid {pid}")
