"""What a whole job would do, summarised before it starts: the confirmation's numbers.

    GET  /api/plan?op=process&query=Q[&scope=unmarked|marked|all][&offset=0&limit=N]
    POST /api/plan  {"op", "ids": [...], "force"} or {"op", "query", "scope"}  (+ "offset", "limit")
      -> {"op", "count", "moves", "retags", "unchanged",
          "failures": {"missing", "unreadable", "not_writable", "destination_taken"},
          "sample": [{"id", "file", "dest", "changes", "error"}],
          "offset", "scanned", "next", "complete"}

Allowed on a read-only server: it changes nothing. Every file whose tags the
job would change is opened read-only with mediafile (unreadable: it would fail
when its tags are read) and opened for writing without writing anything (an
immutable file refuses even root); every file that would move is checked
movable (not immutable, its folder writable) and its destination free. So
the failures are found, not guessed.

Progressive answers. ``count`` is always the whole selection. Without
``limit`` up to 20 000 items are summarised in one answer (``complete``:
true when that is all of them). With ``limit`` the counts cover only the items ``offset`` to
``offset + scanned``; ``next`` is the offset to ask for next (null at the
end), and ``complete`` is true only when this one answer covers the whole
selection. The page asks for a small first slice (numbers on screen at once)
and then larger ones, adding them up, so a 20 000-item plan fills in while
the user reads it.

``summarise`` is the one function that computes a plan; today it runs the
pretend engine (as /api/preview does) and a read-only preflight per file.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beets import util
from flask import jsonify, request
from mediafile import MediaFile

from ..beets_compat import path_format_chooser
from ..engine import Engine
from .blueprint import blueprint, job_config, lib, state
from .marking import existing
from .queries import select
from .validate import ApiError, body_fields, id_list, int_arg, op_arg, scope_arg, text

if TYPE_CHECKING:
    from collections.abc import Sequence

    from beets.library import Library

    from ..operations import Operation
    from ..results import ItemResult, Summary
    from ..runner import JobConfig

SAMPLE = 20  # changes shown in the confirmation
MAX_SLICE = 20_000
FAILURES = ("missing", "unreadable", "not_writable", "destination_taken")
_NUMBERED = re.compile(rb"^(.*)\.\d+$")  # beets' unique_path: "name.1.mp3"


class Collect:
    """A sink that keeps the results of a pretend run."""

    def __init__(self) -> None:
        self.results: list[ItemResult] = []

    def start(self, total: int) -> None:
        pass

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        self.results.extend(result for _, result in numbered)

    def done(self, summary: Summary) -> None:
        pass


@dataclass
class Plan:
    """The summary of what an operation would do to some items."""

    moves: int = 0
    retags: int = 0
    unchanged: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURES, 0))
    sample: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"moves": self.moves, "retags": self.retags, "unchanged": self.unchanged,
                "failures": self.failures, "sample": self.sample}


def summarise(library: Library, op: Operation, ids: Sequence[int], config: JobConfig, *,
              force: bool = False, sample: int = SAMPLE) -> Plan:
    """What ``op`` would do to these items: counts by kind, failures by cause, a sample.

    Nothing is written: the engine runs in pretend mode (album changes rolled
    back), and the preflight opens files read-only or for writing without
    writing. The one place a planner plugs in.
    """
    sink = Collect()
    engine = Engine(library, op, rules=config.rules, settings=config.settings, log=state.plugin._log,
                    force=force, pretend=True)
    summary = engine.run(list(ids), sink)
    if summary.status == "failed":
        raise ApiError(503, f"the plan could not be computed: {summary.error}")
    plan = Plan()
    chooser = path_format_chooser(library)
    for result in sink.results:
        if result.skipped:  # done already (a job without force skips it) or gone meanwhile
            plan.unchanged += 1
            continue
        cause, error = preflight(result, chooser)
        shown = {"id": result.item_id, "file": result.file, "dest": result.dest,
                 "changes": result.changes, "error": error}
        if cause:
            plan.failures[cause] += 1
        elif not result.changes and result.dest == result.file:
            plan.unchanged += 1
            continue
        else:
            plan.moves += result.dest != result.file
            plan.retags += bool(result.changes)
        if len(plan.sample) < sample or (cause and not any(s["error"] for s in plan.sample)):
            plan.sample.append(shown)
    return plan


def preflight(result: ItemResult, chooser: Any) -> tuple[str | None, str | None]:
    """(cause, message) of the failure this item's file would meet, or (None, None).

    Only what the job will do is checked: a file whose tags change is read
    with mediafile and opened for writing; a file that moves must be movable
    (not immutable or append-only, its folder writable); its destination free.
    """
    if result.file is None:
        return "missing", "not in the library any more"
    path = util.syspath(os.fsencode(result.file))
    if not os.path.exists(path):
        return "missing", f"file not found: {result.file}"
    if result.error:  # the pretend run met trouble reading it
        return "unreadable", result.error
    if result.changes:
        try:
            MediaFile(path)
        except Exception as exc:  # mediafile's own errors and whatever mutagen raised
            return "unreadable", f"cannot read its tags ({type(exc).__name__}: {exc})"
        try:
            os.close(os.open(path, os.O_WRONLY))  # opened for writing, nothing written
        except OSError as exc:
            return "not_writable", f"cannot be written ({exc.strerror})"
    if result.dest and result.dest != result.file:
        if _pinned(path) or not os.access(os.path.dirname(path), os.W_OK):
            return "not_writable", "cannot be moved (the file is immutable or its folder is not writable)"
        if result.after is not None:
            taken = _destination_taken(result, chooser)
            if taken:
                return "destination_taken", taken
    return None, None


_FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h
_FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x10, 0x20


def _pinned(path: bytes | str) -> bool:
    """Immutable or append-only (chattr +i / +a): no one, root included, may move it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            flags = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))
        finally:
            os.close(fd)
    except OSError:  # a filesystem without these flags
        return False
    return bool(int.from_bytes(flags[:4], sys.byteorder) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


def _destination_taken(result: ItemResult, chooser: Any) -> str | None:
    """The engine gives a file whose destination another file holds a numbered
    name ("Song.1.mp3"); only such names are checked again."""
    dest = os.fsencode(result.dest or "")
    stem, _ext = os.path.splitext(dest)
    if not _NUMBERED.match(stem):
        return None
    natural = chooser(result.after)
    if natural == dest or not os.path.exists(util.syspath(natural)):
        return None
    return f"another file is at {os.fsdecode(natural)}; it would move to {result.dest} instead"


# --- the route -------------------------------------------------------------------


@blueprint.get("/api/plan")
def plan_get() -> Any:
    op = op_arg(request.args.get("op", "process"))
    query = text("query", request.args.get("query", ""))
    scope = scope_arg(request.args.get("scope"), "unmarked")
    limit = int_arg("limit", MAX_SLICE, 1, MAX_SLICE)
    offset = int_arg("offset", 0, 0, None)
    return _answer(op, select(op, query, scope), scope != "unmarked", offset, limit)


@blueprint.post("/api/plan")
def plan_post() -> Any:
    fields = body_fields({"op", "ids", "force", "query", "scope", "offset", "limit"}, required={"op"})
    op = op_arg(fields["op"])
    if "ids" in fields:  # as the job over them will run: ``force`` includes marked items
        if "query" in fields or "scope" in fields:
            raise ApiError(400, 'give either "ids" (with "force") or a "query" (with "scope"), not both')
        ids, force = existing(id_list(fields["ids"])), fields.get("force", False)
    else:
        if "force" in fields:
            raise ApiError(400, 'a "query" is narrowed by "scope", not "force"')
        scope = scope_arg(fields.get("scope"), "unmarked")
        ids, force = select(op, fields.get("query", ""), scope), scope != "unmarked"
    limit, offset = fields.get("limit", MAX_SLICE), fields.get("offset", 0)
    if not 1 <= limit <= MAX_SLICE or offset < 0:
        raise ApiError(400, f"limit must be from 1 to {MAX_SLICE} and offset at least 0")
    return _answer(op, ids, force, offset, limit)


def _answer(op: Operation, ids: list[int], force: bool, offset: int, limit: int) -> Any:
    part = ids[offset:offset + limit]
    plan = summarise(lib(), op, part, job_config(), force=force)
    end = offset + len(part)
    return jsonify({"op": op.name, "count": len(ids), **plan.as_json(), "offset": offset,
                    "scanned": len(part), "next": end if end < len(ids) else None,
                    "complete": offset == 0 and end >= len(ids)})
