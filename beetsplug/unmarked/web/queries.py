"""A request's beets query, turned into item ids; what the user got wrong is a 400.

beets parses a query without asking SQLite, so some queries only fail when
they run: ~1000 terms exceed SQLite's expression depth ("Expression tree is
too large"), ``id:99999999999999999999`` does not fit SQLite's INTEGER
(``OverflowError`` when bound). Those are the request's fault and answer 400,
before anything is claimed or recorded.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from beets import dbcore
from beets.dbcore.query import AndQuery, NotQuery, Query

from ..markers import unmarked_query
from ..selection import parse_query, select_ids
from .blueprint import lib
from .validate import ApiError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..operations import Operation

# SQLite's words for a statement too big or too deep to run (sqlite3.c).
_TOO_BIG = ("too large", "too many", "too complex", "too big", "parser stack overflow", "too deep")


@contextmanager
def query_errors_as_400(query: str) -> Iterator[None]:
    """Errors a query causes (malformed, or too big for SQLite) as a 400 naming it."""
    shown = query if len(query) <= 80 else query[:77] + "..."
    try:
        yield
    except dbcore.InvalidQueryError as exc:
        raise ApiError(400, f"invalid query: {exc}") from exc
    except OverflowError as exc:
        raise ApiError(400, f"invalid query {shown!r}: a number in it is too large for the database ({exc})") from exc
    except RecursionError as exc:
        raise ApiError(400, f"invalid query {shown!r}: nested too deeply") from exc
    except sqlite3.OperationalError as exc:
        if not any(words in str(exc) for words in _TOO_BIG):
            raise
        raise ApiError(400, f"query too large for the database ({exc}): {len(query.split())} words; "
                            "split it into smaller queries") from exc


def scoped(op: Operation, query: str, scope: str) -> Query:
    """The user's query within the operation's unmarked items, its marked ones, or all."""
    with query_errors_as_400(query):
        user = parse_query(lib(), query)
    if scope == "all":
        return user
    not_done = unmarked_query(op.name)
    return AndQuery([not_done if scope == "unmarked" else NotQuery(not_done), user])


def select(op: Operation, query: str, scope: str) -> list[int]:
    """Ids of the items the query selects in that scope, in id order."""
    with query_errors_as_400(query):
        return select_ids(lib(), scoped(op, query, scope))


def check(op: Operation, query: str, force: bool) -> Any:
    """Parse a job's query (no selection: the job selects under its claim)."""
    return scoped(op, query, "all" if force else "unmarked")
