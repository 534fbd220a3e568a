"""The command-line face: subcommands that parse options and render results."""

from __future__ import annotations

import optparse
from typing import TYPE_CHECKING, Any

from beets import ui
from beets.exceptions import UserError

from . import markers
from .operations import OPERATIONS, get_operation
from .selection import parse_query, select_ids

if TYPE_CHECKING:
    from beets.library import Library

    from . import UnmarkedPlugin


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


def _mark_command() -> ui.Subcommand:
    cmd = ui.Subcommand("mark", help="set markers without processing (QUERY or --all)")
    _add_op_option(cmd.parser)

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        op = get_operation(opts.op)
        ids = _query_ids(lib, args, opts.everything, "mark")
        _report("set", op.name, len(ids), markers.set_markers(lib, ids, op.markers))

    cmd.func = func
    return cmd


def _unmark_command() -> ui.Subcommand:
    cmd = ui.Subcommand("unmark", help="clear markers (QUERY or --all)")
    _add_op_option(cmd.parser)

    def func(lib: Library, opts: Any, args: list[str]) -> None:
        op = get_operation(opts.op)
        ids = _query_ids(lib, args, opts.everything, "unmark")
        _report("cleared", op.name, len(ids), markers.clear_markers(lib, ids, op.markers))

    cmd.func = func
    return cmd


def build_commands(plugin: UnmarkedPlugin) -> list[ui.Subcommand]:
    return [_mark_command(), _unmark_command()]
