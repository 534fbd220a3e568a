"""Errors that end a whole run (as opposed to one item's failure).

The engine tells them apart from item errors: an item error is reported and
the run goes on; a ``RunAborted`` means the run must not touch another file
or commit another batch. The engine undoes its uncommitted batch on disk,
reports the run as failed with this message, and stops.
"""

from __future__ import annotations

import signal

from .beets_compat import UserError


class RunAborted(UserError):
    """The run cannot go on; the message says why and what to do."""


class ClaimLost(RunAborted):
    """This process no longer owns the library: its lock file or its job store
    was deleted or replaced while it ran. Another process may own it now."""


class StoreError(RunAborted):
    """The job store (jobs, events, the journal) cannot be read or written."""


class Cancelled(RunAborted):
    """A cancel was asked for while the run waited on work it cannot finish
    quickly (a helper that does not answer): the batch is put back instead of
    committed, and the run ends ``cancelled``."""


class ConfigError(UserError):
    """A setting of the ``unmarked:`` section is invalid; raised before any claim."""


class Terminated(BaseException):
    """The process was asked to stop (SIGTERM from systemd or ``timeout``,
    SIGHUP from a closed terminal). Raised by the run's signal handler so the
    engine puts its uncommitted batch back, as after Ctrl-C, instead of the
    default action killing the process mid-batch."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")
