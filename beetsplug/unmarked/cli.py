"""The command-line face: subcommands that parse options and render engine events."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TYPE_CHECKING, Any

from beets import ui
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from . import markers
from .beets_compat import UserError, show_model_changes, show_path_changes
from .engine import Engine
from .errors import Terminated
from .jobs import JobConflict, describe, how_to_stop, store_for
from .jobs_cli import job_id, jobs_command, status_command
from .operations import OPERATIONS, Operation, get_operation
from .reversal import UNDO, NotUndoable, reversal_of
from .runner import JobConfig, open_job, open_undo
from .selection import parse_query, select_ids, work_query

if TYPE_CHECKING:
    import optparse

    from beets.library import Library

    from . import UnmarkedPlugin
    from .results import ItemResult, Summary
    from .runner import Job


def _add_op_option(parser: optparse.OptionParser) -> None:
    parser.add_option(
        "--op",
        type="choice",
        choices=list(OPERATIONS),
        default="process",
        help="which markers: process (both, default), rename or normalize",
    )
    parser.add_option(
        "--all",
        dest="everything",
        action="store_true",
        default=False,
        help="allow an empty query, meaning every item in the library",
    )


def _query_ids(lib: Library, args: list[str], everything: bool, verb: str) -> list[int]:
    """Ids for mark/unmark; an empty query must be asked for with --all."""
    if not args and not everything:
        raise UserError(
            f"{verb} needs a query; to {verb} every item in the library, pass --all"
        )
    return select_ids(lib, parse_query(lib, args))


def _report(verb: str, op_name: str, matched: int, counts: dict[str, int]) -> None:
    done = ", ".join(f"{field} {verb} on {n}" for field, n in counts.items())
    ui.print_(f"{matched} item{'s' if matched != 1 else ''} matched ({op_name}): {done}.")


def _marker_command(verb: str, summary: str, done: str, write: Any) -> ui.Subcommand:
    """`beet mark` / `beet unmark`: one batch write of an operation's markers."""
    cmd = ui.Subcommand(verb, help=summary)
    _add_op_option(cmd.parser)

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        op = get_operation(opts.op)
        ids = _query_ids(lib, args, opts.everything, verb)
        _report(done, op.name, len(ids), write(lib, ids, op.markers))

    cmd.func = func
    return cmd


class Bar(tqdm):
    """tqdm without its monitor thread (it only tunes redraws of stalled
    bars): a run forks its helper only from a single-threaded process
    (helper.available)."""

    monitor_interval = 0


class TerminalSink:
    """Progress bar on a terminal (stderr), errors as they come, a summary line.

    With ``pretend``, each item's tag diff (beets' ``show_model_changes``) and
    path change (beets' ``show_path_changes``) instead.
    """

    def __init__(self, op: Operation, plugin: UnmarkedPlugin, pretend: bool, label: str | None = None) -> None:
        self.op, self.log, self.pretend = op, plugin._log, pretend
        self.label = label or op.command  # what the bar and the summary line call the run
        self.began = time.monotonic()
        self.bar: tqdm | None = None

    def start(self, total: int) -> None:
        # A terminal that reports no size (some ptys) would hide tqdm's bar:
        # give it beets' configured width and a usual height instead.
        sized = shutil.get_terminal_size((0, 0)).columns > 0
        self.bar = Bar(total=total, unit="item", desc=self.label, file=sys.stderr,
                        disable=self.pretend or not sys.stderr.isatty(), dynamic_ncols=sized,
                        ncols=None if sized else ui.term_width(), nrows=None if sized else 24)

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        for _, result in numbered:
            if not result.success:
                self.log.error("{}", result.error)
            elif self.pretend:
                self._show(result)
        if self.bar is not None:
            self.bar.update(len(numbered))

    def _show(self, result: ItemResult) -> None:
        if result.after is None or result.before is None:
            return
        if result.changes:
            show_model_changes(result.after, result.before, fields=list(result.changes))
        if result.after.path != result.before.path:
            if not result.changes:
                ui.print_(format(result.before))
            show_path_changes([(result.before.path, result.after.path)])

    def done(self, summary: Summary) -> None:
        if self.bar is not None:
            self.bar.close()
        note = " (pretend: nothing was changed)" if self.pretend else ""
        ui.print_(
            f"{self.label}{note}: {summary.current} processed, {summary.succeeded} succeeded, "
            f"{summary.failed} failed, {summary.skipped} skipped "
            f"in {time.monotonic() - self.began:.1f} s ({summary.status})."
        )


INTERRUPTED = 130  # what a shell expects after Ctrl-C (128 + SIGINT)


def _who(job: dict[str, Any] | None) -> str:
    return describe(job) if job else "another process"


def _raise_unless_all_done(summary: Summary, undo: bool = False) -> None:
    """Exit status 1 unless every item went well (130 after Ctrl-C, see func)."""
    if summary.status == "failed":
        raise UserError(f"the run stopped: {summary.error}")
    if summary.failed:
        after = ("they stay as the job left them (see above why); an undo run again tries them again" if undo
                 else "they stay unmarked and the next run retries them")
        raise UserError(f"{summary.failed} item{'s' if summary.failed != 1 else ''} failed (see above); {after}")
    if summary.status == "cancelled":
        raise UserError("the run was cancelled; the next run finishes the rest")


def _operation_command(op: Operation, plugin: UnmarkedPlugin) -> ui.Subcommand:
    what = {"process": "normalize tags and move files of", "rename": "move files of",
            "normalize": "normalize tags of"}[op.name]
    cmd = ui.Subcommand(op.command, help=f"{what} items not yet marked for {op.name}")
    cmd.parser.add_option("-p", "--pretend", action="store_true", default=False,
                          help="show what would change (tags and paths); change nothing")
    cmd.parser.add_option("-f", "--force", action="store_true", default=False,
                          help="include items already marked")
    cmd.parser.add_option("--wait", action="store_true", default=False,
                          help="if another job runs on this library, wait for it instead of refusing")

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        config = JobConfig.from_plugin(plugin.config)  # bad settings: a clear error, nothing claimed
        sink = TerminalSink(op, plugin, opts.pretend)
        if opts.pretend:
            ids = select_ids(lib, work_query(lib, op, args, force=opts.force))
            engine = Engine(lib, op, rules=config.rules, settings=config.settings, log=plugin._log,
                            force=opts.force, pretend=True)
            _raise_unless_all_done(engine.run(ids, sink))
            return
        work_query(lib, op, args, force=opts.force)  # a malformed query fails before the claim
        wait = (lambda job: ui.print_(f"waiting for {_who(job)} to finish ...")) if opts.wait else None
        try:
            job = open_job(lib, op, args, force=opts.force, origin="cli", config=config, log=plugin._log,
                           wait=wait)
        except JobConflict as conflict:
            raise UserError(f"{conflict}; run again with --wait to wait for it"
                            + (f", or {how_to_stop(conflict.active)}" if conflict.active else "")) from None
        run_job(job, sink, plugin)

    cmd.func = func
    return cmd


def undo_job(lib: Library, text: str, pretend: bool, plugin: UnmarkedPlugin) -> None:
    """``beet unmarked-jobs --undo ID [--pretend]``: a job that puts back what job ID changed (reversal.py)."""
    undone = job_id(text)
    config = JobConfig.from_plugin(plugin.config)
    sink = TerminalSink(UNDO, plugin, pretend, label=f"undo of job {undone}")
    try:
        if pretend:
            reversal = reversal_of(store_for(lib), undone)
            engine = Engine(lib, UNDO, rules=config.rules, settings=config.settings, log=plugin._log,
                            pretend=True, reversal=reversal)
            _raise_unless_all_done(engine.run(reversal.order(), sink), undo=True)
            return
        job = open_undo(lib, undone, origin="cli", config=config, log=plugin._log)
    except NotUndoable as exc:
        raise UserError(str(exc)) from None
    except JobConflict as conflict:
        raise UserError(str(conflict) + (f"; {how_to_stop(conflict.active)}" if conflict.active else "")) from None
    run_job(job, sink, plugin)


def run_job(job: Job, sink: TerminalSink, plugin: UnmarkedPlugin) -> None:
    """Run a claimed job on the terminal; the exit status says how it went
    (1: an item failed or the run stopped; 130 after Ctrl-C; 128+N after signal N)."""
    try:
        with job, logging_redirect_tqdm(loggers=[plugin._log.parent] if plugin._log.parent else []):
            summary = job.run([sink])
    except KeyboardInterrupt:
        ui.print_(f"{sink.label}: interrupted; the next run finishes the rest.")
        raise SystemExit(INTERRUPTED) from None
    except Terminated as stopped:  # SIGTERM / SIGHUP: the batch was put back, as after Ctrl-C
        ui.print_(f"{sink.label}: {stopped}; the next run finishes the rest.")
        raise SystemExit(128 + stopped.signum) from None
    _raise_unless_all_done(summary, undo=job.reversal is not None)


def build_commands(plugin: UnmarkedPlugin) -> list[ui.Subcommand]:
    operations = [_operation_command(op, plugin) for op in OPERATIONS.values()]
    return [
        *operations,
        _marker_command("mark", "set markers without processing (QUERY or --all)", "set", markers.set_markers),
        _marker_command("unmark", "clear markers (QUERY or --all)", "cleared", markers.clear_markers),
        jobs_command(lambda lib, job, pretend: undo_job(lib, job, pretend, plugin)),
        status_command(),
    ]
