"""What the plugin relies on in beets, pinned on the installed release.

``beetsplug/unmarked/beets_compat.py`` is the one module that touches beets
internals; these tests check each thing it assumes, so that a beets release
that changes one fails here, by name, instead of in a user's library. They
run on the newest beets and on the oldest supported one (see ``.ci/run``).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import beets
import pytest
from beets import ui
from beets.dbcore.query import AndQuery
from beets.library import Album, Item, ReadError, WriteError

from beetsplug.unmarked import beets_compat as compat
from beetsplug.unmarked.markers import unmarked_query
from beetsplug.unmarked.selection import select_ids, work_query

from .libenv import LibraryEnv

# --- a library without audio: queries, transactions, models -----------------


@pytest.fixture
def lib(env: LibraryEnv) -> Any:
    """Two albums, a singleton, markers, flexible attributes and album art."""
    lib = env.lib
    root = env.lib_path

    def item(title: str, **values: Any) -> Item:
        it = Item(title=title, path=os.fsencode(root / f"{title}.mp3"), **values)
        lib.add(it)
        return it

    alpha = [item(f"Alpha {n}", album="Alpha", albumartist="Beta", year=2001 + n, track=n) for n in (1, 2)]
    gamma = [item(f"Gamma {n}", album="Gamma", albumartist="Delta", year=2010, comp=True) for n in (1, 2)]
    item("Solo", artist="Beta")  # a singleton
    album_a = lib.add_album(alpha)
    album_a.artpath = os.fsencode(root / "Alpha" / "cover.jpg")
    album_a["albumflex"] = "yes"
    album_a.store()
    lib.add_album(gamma)
    alpha[0]["mood"] = "happy"
    alpha[0].store()
    alpha[1].update({"normalized": 1.0, "renamed": 1.0})  # both markers: done
    alpha[1].store()
    gamma[0]["renamed"] = 1.0  # renamed, not normalized
    gamma[0].store()
    return lib


QUERIES = [
    "",
    "album:Alpha",
    "albumartist:Beta",
    "albumartist:Delta",
    "unmarked:true album:Alpha",
    "unmarked:false",
    "unmarked:rename",
    "unmarked:normalize albumartist:Delta",
    "^album:Alpha",
    "^albumartist:Beta",
    "album:Alpha , album:Gamma",
    "album:Alpha , title:Solo",
    "album::^Al.*a$",
    "albumartist::^(Beta|Delta)$",
    "^album::^G",
    "artpath::cover",  # a field of the albums table: needs the join
    "^artpath::cover",
    "artpath::cover , title:Solo",
    "artpath::cover year:2002",
    "year:2000..2005",
    "comp:true",
    "singleton:true",
    "title:Solo",
    "mood:happy",  # a flexible attribute: evaluated in Python
    "albumflex:yes",  # an album's flexible attribute
    "unmarked:true ^albumartist:Delta",
]

# These must stay SQL (not slow queries): the plugin's selection relies on it.
FAST = [q for q in QUERIES if q.split(":")[0].lstrip("^") not in ("mood", "albumflex")]


def parse(query: str) -> Any:
    parsed, _sort = compat.parse_query_string(query, Item)
    return parsed


@pytest.mark.fast
@pytest.mark.parametrize("query", QUERIES)
def test_selected_ids_are_the_ids_beets_finds(lib: Any, query: str) -> None:
    """The copy of beets' join rule selects exactly what ``lib.items`` does."""
    expected = sorted(item.id for item in lib.items(query))
    assert compat.item_ids(lib, parse(query)) == expected
    for op in ("process", "rename", "normalize"):
        narrowed = AndQuery([unmarked_query(op), parse(query)])
        assert select_ids(lib, work_query(lib, _op(op), query, force=False)) == sorted(
            item.id for item in lib.items(narrowed)
        )


@pytest.mark.fast
def test_the_table_covers_both_sides() -> None:
    """The table has queries that need the albums join and ones that are slow."""
    assert any(compat.item_ids_sql(parse(q)) is None for q in QUERIES)
    assert any("JOIN" in (compat.item_ids_sql(parse(q)) or ("",))[0] for q in QUERIES)


@pytest.mark.fast
@pytest.mark.parametrize("query", FAST)
def test_marker_and_field_queries_stay_in_sql(query: str) -> None:
    assert compat.item_ids_sql(parse(query)) is not None
    assert compat.item_ids_sql(AndQuery([unmarked_query("process"), parse(query)])) is not None


@pytest.mark.fast
def test_album_field_queries_see_album_changes(lib: Any) -> None:
    album = lib.albums("album:Gamma").get()
    album.albumartist = "Epsilon"
    album.store()  # beets carries album fields to the album's items
    assert compat.item_ids(lib, parse("albumartist:Epsilon")) == sorted(i.id for i in album.items())


def _op(name: str) -> Any:
    from beetsplug.unmarked.operations import get_operation

    return get_operation(name)


# --- transactions -------------------------------------------------------------


def _titles(lib: Any) -> list[str]:
    return sorted(item.title for item in lib.items())


@pytest.mark.fast
def test_beets_own_transaction_commits_even_when_the_block_raises(lib: Any) -> None:
    """The beets behaviour ``all_or_nothing`` exists for."""
    item = lib.items("title:Solo").get()
    with pytest.raises(RuntimeError), lib.transaction():
        item.title = "Changed"
        item.store()
        raise RuntimeError
    assert "Changed" in _titles(lib)


@pytest.mark.fast
def test_all_or_nothing_rolls_back_on_error(lib: Any) -> None:
    before = _titles(lib)
    item = lib.items("title:Solo").get()
    with pytest.raises(RuntimeError), compat.all_or_nothing(lib):
        item.title = "Changed"
        item.store()
        lib.add(Item(title="Added", path=b"/added.mp3"))
        raise RuntimeError
    assert _titles(lib) == before
    with compat.all_or_nothing(lib):  # and the library is usable afterwards
        lib.add(Item(title="Added", path=b"/added.mp3"))
    assert "Added" in _titles(lib)


@pytest.mark.fast
def test_all_or_nothing_commits_from_another_connection_view(lib: Any, env: LibraryEnv) -> None:
    with compat.all_or_nothing(lib):
        lib.add(Item(title="Seen", path=b"/seen.mp3"))
    with sqlite3.connect(env.settings["library"]) as other:
        assert other.execute("SELECT count(*) FROM items WHERE title = 'Seen'").fetchone()[0] == 1


@pytest.mark.fast
def test_rolled_back_sees_its_writes_and_keeps_none(lib: Any) -> None:
    before = _titles(lib)
    with compat.rolled_back(lib):
        lib.add(Item(title="Pretend", path=b"/pretend.mp3"))
        assert "Pretend" in _titles(lib)  # nested reads see it
    assert _titles(lib) == before


def in_thread(work: Callable[[], Any]) -> Any:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:  # handed back to the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.fast
def test_a_locked_library_fails_before_any_write(lib: Any, env: LibraryEnv) -> None:
    """BEGIN IMMEDIATE takes the write lock up front; beets' timeout applies."""
    other = sqlite3.connect(env.settings["library"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        lib.timeout = 0.2  # a new thread opens a new connection with it

        def attempt() -> None:
            with compat.all_or_nothing(lib):
                raise AssertionError("the block ran without the write lock")

        with pytest.raises(sqlite3.OperationalError, match="locked"):
            in_thread(attempt)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with compat.all_or_nothing(lib):  # beets' process-wide lock was released
        pass


# --- dirty flags and models from rows -----------------------------------------


@pytest.mark.fast
def test_a_rolled_back_store_can_be_retried_after_restoring_dirty_flags(lib: Any) -> None:
    item = lib.items("title:Solo").get()
    item.title = "Retried"
    flags = compat.dirty_flags([item])
    assert "title" in flags[0]
    with pytest.raises(RuntimeError), compat.all_or_nothing(lib):
        item.store()
        raise RuntimeError
    assert compat.dirty_flags([item]) == [frozenset()]  # store() cleared them...
    assert "Retried" not in _titles(lib)  # ...though nothing was kept
    compat.restore_dirty_flags([item], flags)
    with compat.all_or_nothing(lib):
        item.store()
    assert "Retried" in _titles(lib)


@pytest.mark.fast
def test_model_from_row_is_the_item_beets_loads(lib: Any) -> None:
    item = lib.items("mood:happy").get()
    with lib.transaction() as tx:
        fixed = dict(tx.query("SELECT * FROM items WHERE id = ?", (item.id,))[0])
        flex = {row[0]: row[1] for row in tx.query(
            "SELECT key, value FROM item_attributes WHERE entity_id = ?", (item.id,))}
    built = compat.model_from_row(Item, lib, fixed, flex)
    assert built.id == item.id and built.title == item.title and built.path == item.path
    assert built["mood"] == "happy"
    assert "fixed_values" not in built.keys() and "flex_values" not in built.keys()
    assert compat.dirty_flags([built]) == [frozenset()]
    built.title = "Stored"
    built.store()
    assert lib.get_item(item.id).title == "Stored"


# --- paths and the music directory ---------------------------------------------


@pytest.mark.fast
def test_paths_expand_in_another_thread_only_inside_the_music_dir_context(lib: Any) -> None:
    item = lib.items("title:Solo").get()
    assert os.path.isabs(item.path) and item.path.startswith(lib.directory)

    def plain() -> bytes:
        return lib.get_item(item.id).path

    def with_context() -> bytes:
        with compat.music_dir(lib):
            return lib.get_item(item.id).path

    def bound() -> bytes:
        compat.bind_music_dir(lib)
        return lib.get_item(item.id).path

    assert not os.path.isabs(in_thread(plain))  # why the adapter exists
    assert in_thread(with_context) == item.path
    assert in_thread(bound) == item.path


@pytest.mark.fast
def test_path_helpers(lib: Any) -> None:
    assert compat.to_bytes(Path("/a/b")) == compat.to_bytes("/a/b") == compat.to_bytes(b"/a/b") == b"/a/b"
    assert compat.displayable(b"/a/b") == compat.displayable(Path("/a/b")) == "/a/b"
    assert compat.displayable(None) == ""
    file = compat.library_file(lib)  # bytes/str before beets 2.13, a Path since
    assert isinstance(file, str) and file.endswith("library.db")


@pytest.mark.fast
def test_refresh_library_config_picks_up_new_path_formats(env: LibraryEnv) -> None:
    env.configure(paths={"default": "Changed/$title", "singleton": "Changed/$title"})
    item = Item(title="T", path=b"/x.mp3")
    env.lib.add(item)
    assert b"Changed/T" in item.destination()


@pytest.mark.fast
def test_open_library_opens_the_configured_library(env: LibraryEnv) -> None:
    opened = compat.open_library(beets.config)
    try:
        assert compat.library_file(opened) == env.settings["library"]
        assert opened.directory == env.lib.directory
    finally:
        opened._close()


# --- errors --------------------------------------------------------------------


@pytest.mark.fast
def test_file_errors_name_the_file_and_the_reason() -> None:
    """beets 2.10-2.11 lost both in ``str()``; the adapter backports 2.12's text."""
    assert str(ReadError(b"/music/a.flac", OSError("gone"))) == "error reading /music/a.flac: gone"
    assert str(WriteError(b"/music/a.flac", OSError("full"))) == "error writing /music/a.flac: full"
    assert compat.FILE_ERROR_TEXT_BACKPORTED == (compat.BEETS_VERSION < (2, 12))


@pytest.mark.fast
def test_user_error_is_the_one_beets_reports(env: LibraryEnv) -> None:
    assert compat.UserError is ui.UserError


@pytest.mark.fast
def test_version_parsing() -> None:
    assert compat._version("2.14.1") == (2, 14, 1)
    assert compat._version("2.15.0rc1") == (2, 15, 0)
    assert compat._version("3.0.dev0") == (3, 0)
    assert compat.BEETS_VERSION >= compat.OLDEST_SUPPORTED


# --- util.move's temp files ---------------------------------------------------


@pytest.mark.fast
def test_partial_copy_pattern_finds_what_util_move_leaves(env: LibraryEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kill ``util.move`` mid-copy (a cross-device move): the glob finds its temp."""
    from beets import util

    src = env.lib_path / "src [1].flac"
    src.write_bytes(b"x" * 100)
    dst_dir = env.lib_path / "dst {a}"
    dst_dir.mkdir()
    dst = dst_dir / "new [2].flac"

    def no_rename(*_: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    def die(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", no_rename)
    monkeypatch.setattr("shutil.copyfileobj", die)
    with pytest.raises(KeyboardInterrupt):
        util.move(os.fsencode(src), os.fsencode(dst))
    monkeypatch.undo()
    import glob

    left = glob.glob(compat.partial_copy_pattern(os.fsencode(dst)))
    assert len(left) == 1 and os.path.dirname(left[0]) == os.fsencode(dst_dir)
    assert glob.glob(compat.partial_copy_pattern(os.fsencode(dst_dir / "other.flac"))) == []


# --- display helpers: a missing one costs the pretty output, never the command ---


@pytest.mark.fast
def test_show_path_changes_falls_back_when_beets_moved_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "beets.ui.commands.move", None)  # import fails
    monkeypatch.delattr("beets.ui.commands.show_path_changes", raising=False)
    monkeypatch.setattr(compat, "_noticed", set())
    compat.show_path_changes([(b"/music/old.flac", b"/music/new.flac")])
    assert "/music/old.flac -> /music/new.flac" in capsys.readouterr().out
    assert "show_path_changes" in compat._noticed


@pytest.mark.fast
def test_show_model_changes_falls_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delattr(ui, "show_model_changes")
    monkeypatch.setattr(compat, "_noticed", set())
    old, new = Item(title="a  b"), Item(title="a b")
    compat.show_model_changes(new, old, ["title"])
    assert "title: 'a  b' -> 'a b'" in capsys.readouterr().out


def test_the_beet_command_runs_without_the_display_helpers(env: LibraryEnv) -> None:
    """A real ``beet process-unmarked --pretend`` with both helpers gone."""
    from .audio import make_track

    path = make_track(env.incoming / "t.flac", {"title": "  Hello   World ", "artist": "The Band"})
    env.lib.add(Item.from_path(str(path)))
    script = (
        "import sys, beets.ui, beets.ui.commands.move as move\n"
        "del move.show_path_changes\n"
        "del beets.ui.show_model_changes\n"
        "sys.argv = ['beet', 'process-unmarked', '--pretend']\n"
        "beets.ui.main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "BEETSDIR": str(env.temp_path), "HOME": str(env.temp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "title: '  Hello   World ' -> 'Hello World'" in result.stdout
    assert "Singles/The Band - Hello World.flac" in result.stdout
    assert "(pretend: nothing was changed)" in result.stdout
    assert result.stderr.count("shown plainly") == 2  # one line per missing helper


# --- beets' web app -------------------------------------------------------------


@pytest.fixture
def beets_web_app() -> Iterator[Any]:
    pytest.importorskip("flask")
    app = compat.web_app()
    saved = dict(app.config)
    yield app
    app.config.clear()
    app.config.update(saved)


@pytest.mark.fast
def test_web_app_is_beets_module_level_app_and_configures_like_beet_web(
    env: LibraryEnv, beets_web_app: Any
) -> None:
    from beetsplug import web

    assert beets_web_app is web.app
    web.WebPlugin()  # its config defaults, as when beets loads the plugin
    env.configure(web={"readonly": False, "include_paths": True})
    compat.configure_web_app(beets_web_app, env.lib)
    assert beets_web_app.config["lib"] is env.lib
    assert beets_web_app.config["READONLY"] is False and beets_web_app.config["INCLUDE_PATHS"] is True
    client = beets_web_app.test_client()
    assert client.get("/item/").status_code == 200  # beets' own API answers with our setup


@pytest.mark.fast
def test_notice_says_it_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(compat, "_noticed", set())
    with caplog.at_level("WARNING", logger="beets"):
        compat.notice("k", "a feature is off on this beets")
        compat.notice("k", "a feature is off on this beets")
    assert [r.getMessage() for r in caplog.records].count("unmarked: a feature is off on this beets") == 1


@pytest.mark.fast
def test_album_model_from_row(lib: Any) -> None:
    album = lib.albums("album:Alpha").get()
    with lib.transaction() as tx:
        fixed = dict(tx.query("SELECT * FROM albums WHERE id = ?", (album.id,))[0])
    built = compat.model_from_row(Album, lib, fixed, {})
    assert built.album == "Alpha" and built.artpath == album.artpath


@pytest.mark.fast
def test_the_oldest_supported_beets_is_stated_once_everywhere() -> None:
    """pyproject's lower bound, the oldest-beets CI recipe and the adapter agree."""
    import re

    root = Path(__file__).resolve().parent.parent
    bound = re.search(r'"beets>=([\d.]+)"', (root / "pyproject.toml").read_text())
    pinned = re.search(r"^beets==([\d.]+)$", (root / ".ci/oldest-beets/requirements.txt").read_text(), re.M)
    assert bound and pinned
    assert bound.group(1) == pinned.group(1) == ".".join(map(str, compat.OLDEST_SUPPORTED))
    assert "<" not in re.search(r'"beets[^"]*"', (root / "pyproject.toml").read_text()).group(0)


@pytest.mark.fast
def test_stored_id(lib: Any) -> None:
    item = lib.items("title:Solo").get()
    assert compat.stored_id(item) == item.id
    with pytest.raises(ValueError, match="not in the library"):
        compat.stored_id(Item(title="new"))


@pytest.mark.fast
def test_show_model_changes_falls_back_on_another_signature(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ui, "show_model_changes", lambda new, old, columns: None)  # no `fields`
    monkeypatch.setattr(compat, "_noticed", set())
    compat.show_model_changes(Item(title="b"), Item(title="a"), ["title"])
    assert "title: 'a' -> 'b'" in capsys.readouterr().out


_readers: list[threading.Thread] = []


def _reads_in_another_thread(lib: Any) -> bool:
    """Whether a transaction can be had at all (in a thread of its own, so a held lock shows as a timeout)."""
    done = threading.Event()

    def read() -> None:
        with lib.transaction() as tx:
            tx.query("SELECT 1")
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    _readers.append(reader)
    reader.start()
    return done.wait(5)


@pytest.mark.fast
@pytest.mark.parametrize("where", ["enter", "exit"])
def test_a_transaction_cut_by_a_signal_is_released(lib: Any, where: str) -> None:
    """What a KeyboardInterrupt inside beets' Transaction.__enter__ (after its
    lock is taken) or __exit__ (before it is released) leaves behind: the lock
    held, so every later transaction waits forever. The engine's undo first
    clears it (release_interrupted_transaction)."""
    tx = lib.transaction()
    tx.__enter__()  # the lock is taken; the signal lands before the ``with`` body begins
    if where == "exit":
        with lib._tx_stack() as stack:
            stack.pop()  # __exit__ got as far as popping the stack
    assert not _reads_in_another_thread(lib), "beets leaves its lock held (what this guards against)"
    assert compat.release_interrupted_transaction(lib) is True
    assert _reads_in_another_thread(lib)
    assert compat.release_interrupted_transaction(lib) is False, "nothing left the second time"
    for reader in _readers:  # the one that waited goes on once the lock is free: done before the library goes
        reader.join(10)
        assert not reader.is_alive()
    _readers.clear()
