"""What a run reports: one result per item, the counters of the run, and the
text form of paths and messages in them.

The engine makes these, the sinks (progress bar, job store, log) show them,
and events.py turns them into the JSON of the event stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from beets.library import Item


def readable(value: str | bytes) -> str:
    """A path or message as clean text: bytes that are not UTF-8 (a Latin-1
    file name, say) become U+FFFD instead of lone surrogates in JSON."""
    raw = value if isinstance(value, bytes) else os.fsencode(value)
    return raw.decode("utf-8", "replace")


@dataclass
class ItemResult:
    """What happened to one item; becomes one ``item`` event."""

    item_id: int
    file: str | None
    dest: str | None = None
    success: bool = True
    error: str | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)
    skipped: bool = False
    # What an undo of the job needs beyond ``file``/``dest``/``changes``
    # (reversal.py): the item's markers before the job; its exact paths when
    # ``file``/``dest`` could not spell them (not UTF-8).
    undo: dict[str, Any] | None = None
    # In-process renderers only (``--pretend`` diffs); never serialized.
    before: Item | None = None
    after: Item | None = None

    @property
    def recorded(self) -> dict[str, Any]:
        """What a commit journals of a done item's result (journal.Unreported)."""
        return {"file": self.file, "dest": self.dest, "changes": self.changes, "undo": self.undo}

    @classmethod
    def committed(cls, item_id: int, recorded: dict[str, Any] | None, file: str) -> ItemResult:
        """An item a stopped run committed and never reported, as its report
        would have been (``recorded``), or, from a release that journaled no
        result, done where it is."""
        if recorded is None:
            return cls(item_id, file, file)
        return cls(item_id, recorded["file"], recorded["dest"], changes=recorded["changes"] or {},
                   undo=recorded["undo"])


@dataclass
class Summary:
    """Counters of a run; becomes the ``done`` event."""

    total: int
    status: str = "running"
    current: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[ItemResult] = field(default_factory=list)
    error: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any], status: str | None = None,
                    error: str | None = None) -> Summary:
        """The counters a job record (a store row or its summary) holds so far:
        for a run that resumes it, or a ``done`` event that ends it."""
        return cls(total=record["total"], status=status or record["status"], current=record["current"],
                   succeeded=record["succeeded"], failed=record["failed"], skipped=record["skipped"],
                   error=error)

    def count(self, result: ItemResult) -> int:
        self.current += 1
        if result.skipped:
            self.skipped += 1
        elif result.success:
            self.succeeded += 1
        else:
            self.failed += 1
            self.failures.append(result)
        return self.current
