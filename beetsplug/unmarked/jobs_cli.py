"""What the page shows, on the terminal: recent jobs, one job's record, cancel, counts.

    beet unmarked-jobs                 recent jobs, newest first
    beet unmarked-jobs --show ID       one job's record, failed items first
    beet unmarked-jobs --cancel ID     ask a running job to stop (from any terminal)
    beet unmarked-jobs --undo ID       put back what job ID changed (a new job; --pretend shows it)
    beet unmarked-status               unmarked items per operation, stale renamed markers; the running job
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from beets import ui

from .beets_compat import UserError
from .jobs import ACTIVE, describe, store_for
from .markers import renamed_counts, unmarked_query
from .operations import OPERATIONS
from .selection import select_ids

if TYPE_CHECKING:
    from collections.abc import Callable

    from beets.library import Library


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


def _took(job: dict[str, Any]) -> str:
    if not job["started"]:
        return "-"
    end = job["finished"] or time.time()
    return f"{end - job['started']:.1f} s"


def job_line(job: dict[str, Any]) -> str:
    """One job as a line: what the page's recent-jobs list shows."""
    op = f"undo {job['undoes']}" if job.get("undoes") is not None else job["op"]
    line = (f"{job['job']:>5}  {job['status']:<11} {op:<9} {job['origin']:<6} "
            f"{job['current']}/{job['total']} done, {job['succeeded']} ok, {job['failed']} failed, "
            f"{job['skipped']} skipped  {_when(job['created'])}  {_took(job)}")
    if job["resumed"]:
        line += f"  (resumed {len(job['resumed'])}x)"
    return line


def job_id(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise UserError(f"a job id is a number, not {text!r}")
    return int(text)


def _get(lib: Library, text: str) -> dict[str, Any]:
    job = store_for(lib).get(job_id(text))
    if job is None:
        raise UserError(f"no job {text} (see `beet unmarked-jobs`)")
    return job


def show(lib: Library, text: str) -> None:
    """A job's record: the summary, then its failed items with their errors."""
    job = _get(lib, text)
    ui.print_(job_line(job))
    ui.print_(f"query: {job['query'] or '(all)'}{'  --force' if job['force'] else ''}")
    if job["error"]:
        ui.print_(f"stopped: {job['error']}")
    for note in job["resumed"]:
        ui.print_(note)
    if job["errors"]:
        ui.print_(f"failed items ({len(job['errors'])}):")
    for failure in job["errors"]:
        ui.print_(f"  item {failure['item_id']}: {failure['error']}")


def cancel(lib: Library, text: str) -> None:
    job = _get(lib, text)
    if job["status"] not in ACTIVE:
        raise UserError(f"job {job['job']} is not running ({job['status']})")
    store_for(lib).request_cancel(job["job"])
    ui.print_(f"job {job['job']}: cancel requested; it stops before its next item")


def jobs_command(undo: Callable[[Library, str, bool], None]) -> ui.Subcommand:
    """``undo(lib, id, pretend)`` runs an undo job (cli.py: it shares the operations' terminal)."""
    cmd = ui.Subcommand("unmarked-jobs", help="list recent unmarked jobs, show one, cancel one, or undo one")
    cmd.parser.add_option("--show", metavar="ID", help="print a job's record, failed items first")
    cmd.parser.add_option("--cancel", metavar="ID", help="ask a running job to stop")
    cmd.parser.add_option("--undo", metavar="ID", help="put back what a finished job changed: paths, the fields "
                          "it changed (library and files), markers; items changed since are left alone")
    cmd.parser.add_option("-p", "--pretend", action="store_true", default=False,
                          help="with --undo: show what the undo would change; change nothing")
    cmd.parser.add_option("-n", "--limit", type="int", default=20, help="how many jobs to list (default 20)")

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        if opts.pretend and not opts.undo:
            raise UserError("--pretend goes with --undo")
        if opts.undo:
            undo(lib, opts.undo, opts.pretend)
        elif opts.show:
            show(lib, opts.show)
        elif opts.cancel:
            cancel(lib, opts.cancel)
        else:
            jobs = store_for(lib).list(max(1, opts.limit))
            if not jobs:
                ui.print_("no jobs yet")
            for job in jobs:
                ui.print_(job_line(job))

    cmd.func = func
    return cmd


def status_command() -> ui.Subcommand:
    cmd = ui.Subcommand("unmarked-status", help="count the items not yet marked, per operation, and say "
                        "whether a job is running")

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        for name in OPERATIONS:
            ui.print_(f"{name:<10} {len(select_ids(lib, unmarked_query(name)))} unmarked")
        renamed = renamed_counts(lib)
        ui.print_(f"renamed    {renamed['stale']} stale (made under another path configuration: "
                  "rename-unmarked checks them again)")
        if renamed["unknown"]:
            ui.print_(f"renamed    {renamed['unknown']} without a configuration fingerprint "
                      "(made by an older release: taken as made under this one)")
        active = store_for(lib).active()
        if not active:
            ui.print_("no job running")
        elif active["op"] in ("rename", "process"):  # see README: `beet update` beside a job
            ui.print_(f"running: {describe(active)}; it moves files: wait for it to end before a `beet update`, "
                      "which can drop the entries of files moved while it runs")
        else:
            ui.print_(f"running: {describe(active)}")

    cmd.func = func
    return cmd
