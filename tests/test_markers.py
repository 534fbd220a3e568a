"""Markers, the `unmarked:` query and `beet mark` / `beet unmark`, through the real `beet`."""

from __future__ import annotations

import functools
import operator
import sqlite3

import pytest
from beets.dbcore.query import AndQuery, NotQuery

from beetsplug.unmarked import markers
from beetsplug.unmarked.layout import LAYOUT
from beetsplug.unmarked.selection import parse_query

from .audio import MESSY_TRACKS
from .libenv import LibraryEnv

EXTS = ["flac", "ogg", "mp3"]


def add_messy(env: LibraryEnv) -> list[int]:
    """Six real files, two of each format, with the messy tags."""
    items = env.add_tracks(
        (f"track{i}.{EXTS[i % 3]}", tags) for i, tags in enumerate(MESSY_TRACKS)
    )
    return [item.id for item in items]


def marker_rows(env: LibraryEnv) -> dict[tuple[int, str], str]:
    with sqlite3.connect(env.settings["library"]) as conn:
        rows = conn.execute(
            "SELECT entity_id, key, value FROM item_attributes WHERE key IN ('normalized', 'renamed')"
        ).fetchall()
    return {(entity, key): value for entity, key, value in rows}


@pytest.fixture
def marked(env: LibraryEnv) -> dict[str, list[int]]:
    """Items in every marker state: rename-only, normalize-only, both, none."""
    ids = add_messy(env)
    groups = {"rename": ids[0:2], "normalize": ids[2:4], "process": ids[4:5], "none": ids[5:6]}
    for op in ("rename", "normalize", "process"):
        query = ["id:" + str(i) for i in groups[op]]
        # beets ORs query terms separated by ","
        env.beet("mark", "--op", op, *functools.reduce(operator.iadd, ([q, ","] for q in query), [])[:-1])
    return groups


def test_plugin_loads_from_config_and_everything_starts_unmarked(env: LibraryEnv) -> None:
    ids = add_messy(env)
    assert "unmarked" in env.beet("version").stdout
    assert env.beet_ids("unmarked:true") == sorted(ids)
    assert env.beet_ids("unmarked:false") == []


def test_every_form_of_the_query(env: LibraryEnv, marked: dict[str, list[int]]) -> None:
    g = marked
    everything = sorted(functools.reduce(operator.iadd, g.values(), []))
    assert env.beet_ids("unmarked:true") == sorted(g["rename"] + g["normalize"] + g["none"])
    assert env.beet_ids("unmarked:process") == env.beet_ids("unmarked:true")
    assert env.beet_ids("unmarked:false") == g["process"]
    assert env.beet_ids("unmarked:rename") == sorted(g["normalize"] + g["none"])
    assert env.beet_ids("unmarked:normalize") == sorted(g["rename"] + g["none"])
    assert env.beet_ids("^unmarked:rename") == sorted(g["rename"] + g["process"])
    assert env.beet_ids("^unmarked:true") == g["process"]
    assert env.beet_ids("unmarked:TRUE") == env.beet_ids("unmarked:true")
    assert sorted(env.beet_ids("unmarked:true") + env.beet_ids("^unmarked:true")) == everything


def test_query_combines_with_other_terms_and_or(env: LibraryEnv, marked: dict[str, list[int]]) -> None:
    g = marked
    main_artist = env.ids("artist:Main")
    assert main_artist, "fixture has 'Main Artist' tracks"
    assert env.beet_ids("unmarked:rename", "artist:Main") == sorted(set(main_artist) & set(g["normalize"] + g["none"]))
    done_normalizing = set(g["normalize"] + g["process"])
    assert env.beet_ids("artist:Main", "^unmarked:normalize") == sorted(set(main_artist) & done_normalizing)
    # OR with a fixed-field query and with a title match
    assert env.beet_ids("unmarked:false", ",", "title:Clean") == sorted(g["process"] + env.ids("title:Clean"))
    # Path query (a beets PathQuery) combined with the marker query
    assert env.beet_ids("unmarked:true", f"path:{env.incoming}") == env.beet_ids("unmarked:true")
    # Combined with a flexible-attribute (slow, Python-side) query: still right
    env.beet("modify", "-y", "-W", "mood=calm", "title:Clean")
    undone = set(g["none"] + g["rename"] + g["normalize"])
    assert env.beet_ids("unmarked:true", "mood:calm") == sorted(set(env.ids("title:Clean")) & undone)


def test_mark_reports_counts_and_keeps_earlier_times(env: LibraryEnv) -> None:
    ids = add_messy(env)
    first = env.beet("mark", "artist:Main")
    assert "3 items matched (process): normalized set on 3, renamed set on 3." in first.stdout
    before = marker_rows(env)
    assert {item for item, _ in before} == set(env.ids("artist:Main"))
    again = env.beet("mark", "artist:Main")
    assert "normalized set on 0, renamed set on 0" in again.stdout
    assert marker_rows(env) == before, "re-marking must not rewrite when the work was done"
    env.beet("mark", "--op", "rename", "--all")
    assert env.beet_ids("^unmarked:rename") == sorted(ids)


def test_unmark_clears_only_the_requested_markers(env: LibraryEnv) -> None:
    ids = add_messy(env)
    env.beet("mark", "--all")
    out = env.beet("unmark", "--op", "normalize", "artist:Main").stdout
    assert "3 items matched (normalize): normalized cleared on 3." in out
    assert env.beet_ids("unmarked:normalize") == env.ids("artist:Main")
    assert env.beet_ids("unmarked:rename") == []
    env.beet("unmark", "--all")
    assert env.beet_ids("unmarked:true") == sorted(ids)
    assert marker_rows(env) == {}


@pytest.mark.parametrize("command", ["mark", "unmark"])
def test_empty_query_is_refused_without_all(env: LibraryEnv, command: str) -> None:
    add_messy(env)
    env.beet("mark", "artist:Main")
    before = marker_rows(env)
    result = env.beet(command, check=False)
    assert result.returncode == 1
    assert "needs a query" in result.stderr and "--all" in result.stderr
    assert marker_rows(env) == before


def test_unknown_op_is_refused(env: LibraryEnv) -> None:
    add_messy(env)
    result = env.beet("mark", "--op", "tidy", "artist:Main", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'tidy'" in result.stderr
    assert marker_rows(env) == {}


@pytest.mark.parametrize("args", [["ls", "unmarked:maybe"], ["mark", "unmarked:maybe"], ["ls", "unmarked:"]])
def test_malformed_pattern_names_the_choices(env: LibraryEnv, args: list[str]) -> None:
    add_messy(env)
    result = env.beet(*args, check=False)
    assert result.returncode == 1
    assert "invalid query" in result.stderr
    assert "true, false, rename, normalize or process" in result.stderr
    assert marker_rows(env) == {}


def test_locked_library_fails_clearly_and_writes_nothing(env: LibraryEnv) -> None:
    add_messy(env)
    env.configure(timeout=0.3)
    holder = sqlite3.connect(env.settings["library"], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        result = env.beet("mark", "--all", check=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 1
    assert "is locked by another process" in result.stderr
    assert "nothing was changed" in result.stderr
    assert marker_rows(env) == {}


def test_library_that_cannot_be_opened(env: LibraryEnv) -> None:
    broken = env.temp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    result = env.beet("-l", str(broken), "mark", "--all", check=False)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "cannot" in result.stderr


@pytest.mark.fast
def test_batch_write_is_one_commit(env: LibraryEnv) -> None:
    """Marking 500 items runs exactly one COMMIT on the library connection."""
    items = [env.add_item(title=f"t{i}") for i in range(500)]
    statements: list[str] = []
    env.lib._connection().set_trace_callback(statements.append)
    try:
        counts = markers.set_markers(env.lib, [i.id for i in items], ("normalized", "renamed"))
    finally:
        env.lib._connection().set_trace_callback(None)
    assert counts == {"normalized": 500, "renamed": 500}
    commits = [s for s in statements if s.strip().upper().startswith("COMMIT")]
    assert len(commits) == 1, statements[-5:]
    assert len(env.lib.items("unmarked:false")) == 500


@pytest.mark.fast
@pytest.mark.parametrize("pattern", ["true", "false", "rename", "normalize", "process"])
@pytest.mark.parametrize("negate", [False, True])
def test_sql_clause_agrees_with_python_match(env: LibraryEnv, pattern: str, negate: bool) -> None:
    """The SQL answer equals beets' Python-side evaluation, and stays SQL when
    combined; ``renamed`` markers made under another path configuration (stale),
    without a fingerprint (an older release's) or a fingerprint left alone included."""
    items = [env.add_item(title=f"t{i}", artist="x" if i % 2 else "y") for i in range(14)]
    markers.set_markers(env.lib, [i.id for i in items[0:2]], ("renamed",))
    markers.set_markers(env.lib, [i.id for i in items[2:4]], ("normalized",))
    markers.set_markers(env.lib, [i.id for i in items[4:6]], ("renamed", "normalized"))
    markers.set_markers(env.lib, [i.id for i in items[8:14]], ("renamed", "normalized"))
    with sqlite3.connect(env.settings["library"]) as conn:
        conn.executemany("UPDATE item_attributes SET value = 'another' WHERE entity_id = ? AND key = ?",
                         [(i.id, LAYOUT) for i in items[8:10]])  # stale
        conn.executemany("DELETE FROM item_attributes WHERE entity_id = ? AND key = ?",
                         [(i.id, LAYOUT) for i in items[10:12]])  # an older release's
        conn.executemany("DELETE FROM item_attributes WHERE entity_id = ? AND key = 'renamed'",
                         [(i.id,) for i in items[12:14]])  # a fingerprint without its marker
    query = parse_query(env.lib, [("^" if negate else "") + f"unmarked:{pattern}", "artist:x"])
    assert query.clause()[0] is not None, "combined query must stay in SQL"
    assert isinstance(query, AndQuery)
    by_sql = sorted(item.id for item in env.lib.items(query))
    by_python = sorted(item.id for item in env.lib.items() if query.match(item))
    assert by_sql == by_python
    assert by_sql, "every pattern selects something in this fixture"
    if negate:
        assert isinstance(query.subqueries[0], NotQuery)


@pytest.mark.fast
def test_markers_are_not_written_for_items_that_no_longer_exist(env: LibraryEnv) -> None:
    """Ids selected earlier, one item removed since: no orphan attribute row."""
    ids = [item.id for item in env.add_tracks([("a.flac", {"title": "A"}), ("b.flac", {"title": "B"})])]
    env.lib.get_item(ids[1]).remove()
    counts = markers.set_markers(env.lib, ids, ["renamed"])
    assert counts == {"renamed": 1}
    with sqlite3.connect(env.settings["library"]) as conn:
        rows = conn.execute("SELECT entity_id FROM item_attributes WHERE key = 'renamed'").fetchall()
    assert rows == [(ids[0],)]
