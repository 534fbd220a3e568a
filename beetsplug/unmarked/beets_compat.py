"""The one place that touches beets internals.

The plugin supports every beets release from 2.10.0 on (2.10 brought the
music-dir context that relative library paths need). Everything here is
either a name beets has moved between releases, a private name, or a
behaviour beets does not promise; the rest of the plugin calls this module
instead of reaching into beets, and ``tests/test_beets_compat.py`` pins the
behaviour relied on, so a beets release that changes it fails a test rather
than a user's library.

Each helper says which beets versions do what, and what the public
alternative is where one exists. A name that may move again is imported
defensively: if it is gone, the feature it serves degrades (said once, in one
line, at run time) and every other command keeps working.
"""

from __future__ import annotations

import glob
import inspect
import os
import re
import sqlite3
import threading
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeVar

import beets
from beets import library, ui, util
from beets import logging as beets_logging
from beets.dbcore import Model as _Model

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from beets.dbcore.db import Model, Transaction
    from beets.dbcore.query import Query
    from beets.library import Item, Library
    from beets.library.models import LibModel
    from flask import Flask

__all__ = [
    "BEETS_VERSION",
    "FILE_ERROR_TEXT_BACKPORTED",
    "OLDEST_SUPPORTED",
    "FileOperationError",
    "ReadError",
    "UserError",
    "WriteError",
    "all_or_nothing",
    "begin",
    "begin_immediate",
    "bind_music_dir",
    "commit",
    "configure_web_app",
    "dirty_flags",
    "displayable",
    "item_ids",
    "item_ids_sql",
    "library_file",
    "listens",
    "media_fields",
    "model_from_row",
    "move_temp_prefix",
    "music_dir",
    "notice",
    "open_library",
    "parse_query_parts",
    "parse_query_string",
    "partial_copy_pattern",
    "path_format_chooser",
    "plugin_getters_fixed",
    "refresh_library_config",
    "release_interrupted_transaction",
    "reopen_after_fork",
    "restore_dirty_flags",
    "rollback",
    "rolled_back",
    "set_field",
    "show_model_changes",
    "show_path_changes",
    "store_many",
    "stored_id",
    "to_bytes",
    "web_app",
]


def _version(text: str) -> tuple[int, ...]:
    """``"2.14.1"`` -> ``(2, 14, 1)``; stops at the first part that is not a number."""
    parts = []
    for piece in text.split(".")[:3]:
        number = re.match(r"\d+", piece)
        if number is None:
            break
        parts.append(int(number.group()))
    return tuple(parts)


BEETS_VERSION: tuple[int, ...] = _version(getattr(beets, "__version__", "0"))
"""The running beets release as a tuple, e.g. ``(2, 14, 1)``."""

OLDEST_SUPPORTED = (2, 10, 0)
"""Keep in step with ``beets>=`` in pyproject.toml."""

_log = beets_logging.getLogger("beets")  # beets' own: plugin loggers prefix differently per release
_noticed: set[str] = set()


def notice(key: str, message: str) -> None:
    """Say once per process, in one line, that something degrades on this beets.

    Goes to beets' log (shown by default at warning level), never raises.
    """
    if key in _noticed:
        return
    _noticed.add(key)
    _log.warning("unmarked: {}", message)


def _beets() -> str:
    return f"beets {getattr(beets, '__version__', '?')}"


# --- exceptions --------------------------------------------------------------

try:  # beets >= 2.12: beets.exceptions; beets.ui re-exports it
    from beets.exceptions import UserError
except ImportError:  # pragma: no cover - beets 2.10, 2.11
    from beets.ui import UserError  # type: ignore[no-redef, attr-defined]

try:  # public: in beets.library.__all__ in 2.10-2.14
    from beets.library import FileOperationError
except ImportError:  # pragma: no cover - a future layout
    from beets.library.exceptions import FileOperationError  # type: ignore[no-redef]


def _backport_file_error_text() -> bool:
    """Make ``str(ReadError/WriteError)`` name the file and the reason.

    beets 2.10-2.11 format them as ``"error writing <super: ...>"``: the path
    and the reason are lost, in our messages and in beets' own. beets 2.12
    fixed it (``super().__str__()``); on the older releases this installs that
    same fix on the two classes. Detected by behaviour, not by version.
    Returns whether it was needed.
    """
    probe = str(library.WriteError(b"/probe", OSError("reason")))
    if "/probe" in probe:
        return False
    for cls, verb in ((library.ReadError, "reading"), (library.WriteError, "writing")):
        cls.__str__ = _file_error_str(verb)  # type: ignore[method-assign]
    return True


def _file_error_str(verb: str) -> Any:
    def text(self: FileOperationError) -> str:
        return f"error {verb} {FileOperationError.__str__(self)}"

    return text


FILE_ERROR_TEXT_BACKPORTED = _backport_file_error_text()


# --- queries -----------------------------------------------------------------

try:  # beets >= 2.10 (the library package split); no public alternative
    from beets.library.queries import parse_query_parts, parse_query_string
except ImportError:  # pragma: no cover - older layout
    from beets.library import parse_query_parts, parse_query_string  # type: ignore[attr-defined, no-redef]


def item_ids_sql(query: Query) -> tuple[str, Sequence[Any]] | None:
    """SQL (and its values) selecting the ids of the items ``query`` matches,
    in id order; None if part of the query runs in Python (a slow query).

    A copy of the FROM rule of beets' ``Database._fetch`` (2.10-2.13) /
    ``Database._get_results`` (2.14): when the query names album fields
    (``Item.other_db_fields``), join the albums table with
    ``Item.relation_join``. Both names are beets internals; the public
    alternative is ``[i.id for i in lib.items(query)]``, which builds every
    Item (~170 us each). ``test_beets_compat`` checks this against
    ``lib.items`` for a table of queries.
    """
    where, subvals = query.clause()
    if where is None:
        return None
    item_cls = library.Item
    joined = query.field_names & item_cls.other_db_fields
    source = f"items {item_cls.relation_join}" if joined else "items"
    return f"SELECT DISTINCT items.id FROM {source} WHERE {where} ORDER BY items.id", subvals


def item_ids(lib: Library, query: Query) -> list[int]:
    """Ids of the items matching ``query``, in id order, without building Items
    when SQLite can answer alone."""
    sql = item_ids_sql(query)
    if sql is None:  # part of the query only beets can evaluate, in Python
        with music_dir(lib):
            ids = [item.id for item in lib.items(query)]
        return sorted(i for i in ids if i is not None)  # stored items always have one
    with lib.transaction() as tx:
        return [row[0] for row in tx.query(*sql)]


# --- the music directory and paths ------------------------------------------

def music_dir(lib: Library) -> AbstractContextManager[Any]:
    """Expand the library's relative paths in this thread for the block.

    beets >= 2.10: ``Library.music_dir_context()`` (public). Paths are stored
    relative to the music directory and expanded through a ContextVar that
    only the thread that opened the Library has set.
    """
    enter = getattr(lib, "music_dir_context", None)
    if enter is not None:
        return enter()
    from beets import context  # pragma: no cover - not in any supported release

    return context.music_dir(lib.directory)  # pragma: no cover


def bind_music_dir(lib: Library) -> None:
    """Expand ``lib``'s paths in the current thread from now on (for a web
    request thread, where no ``with`` block spans the request).

    beets >= 2.10: ``beets.context.set_music_dir`` (a module beets calls
    internal, no public alternative besides ``music_dir_context``).
    """
    from beets import context

    context.set_music_dir(lib.directory)


def to_bytes(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> bytes:
    """Any path as the bytes beets stores (``Item.path``, ``Library.directory``
    are bytes in 2.10-2.14; upstream is moving some to ``pathlib.Path``)."""
    return os.fsencode(path)


def displayable(path: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None) -> str:
    """A path for messages. ``util.displayable_path`` takes bytes or str in all
    supported releases; a ``pathlib.Path`` goes through ``os.fsdecode``."""
    if path is None:
        return ""
    if isinstance(path, (str, bytes)):
        return util.displayable_path(path)
    return os.fsdecode(path)


def library_file(lib: Library) -> str:
    """The library database file as str (``Library.path`` is bytes or str in
    2.10-2.12 and a ``pathlib.Path`` from 2.13)."""
    return os.fsdecode(lib.path)


# --- opening the library -----------------------------------------------------

def open_library(config: Any) -> Library:
    """The Library the user's configuration describes, opened as ``beet`` does.

    beets 2.10-2.14: ``beets.ui._open_library`` (private; it checks the
    connection and raises UserError with beets' own message). There is no
    public factory; if it disappears, the Library is built directly.
    """
    opener = getattr(ui, "_open_library", None)
    if opener is not None:
        return opener(config)
    lib = library.Library(config["library"].as_filename(), config["directory"].as_filename())  # pragma: no cover
    refresh_library_config(lib)  # pragma: no cover
    return lib  # pragma: no cover


def refresh_library_config(lib: Library) -> None:
    """Make ``lib`` use the path formats and replacements now in beets' config.

    beets 2.10-2.11 take them as ``Library(...)`` arguments (built by
    ``ui.get_path_formats``/``ui.get_replacements``); from 2.12 ``path_formats``
    is a cached property read from the config and ``replacements`` is set from
    ``Library.get_replacements()`` at creation. Either way they are snapshots:
    a change of config afterwards (tests) needs this.
    """
    if isinstance(type(lib).__dict__.get("path_formats"), cached_property):
        lib.__dict__.pop("path_formats", None)  # recomputed from the config on next use
    else:
        lib.path_formats = ui.get_path_formats()  # type: ignore[attr-defined, misc]
    getter = getattr(lib, "get_replacements", None)
    lib.replacements = getter() if getter is not None else ui.get_replacements()  # type: ignore[attr-defined]


# --- transactions ------------------------------------------------------------
#
# beets' ``Transaction`` (2.10-2.14) takes a process-wide lock for the root
# transaction of a thread and commits on exit, *even when the block raised*:
# it never rolls back. Nested ``lib.transaction()`` blocks in the same thread
# share the root. The plugin needs all-or-nothing batches, so it drives
# SQLite itself inside a root transaction: BEGIN IMMEDIATE (the write lock up
# front, so a busy library fails before any work), COMMIT, or ROLLBACK on any
# error; beets' own commit at exit then finds nothing to do. This relies on
# ``Transaction.query`` running SQL on beets' connection as is, and on
# Python's sqlite3 not opening a transaction of its own before our BEGIN
# (the default "legacy" transaction control). No public alternative.

def begin_immediate(tx: Transaction) -> None:
    """Start the SQLite transaction now, taking the write lock (or raising
    ``sqlite3.OperationalError('database is locked')`` after beets' timeout)."""
    tx.query("BEGIN IMMEDIATE")


def begin(tx: Transaction) -> None:
    """Start a deferred SQLite transaction (for work that will be rolled back)."""
    tx.query("BEGIN")


def commit(tx: Transaction) -> None:
    tx.query("COMMIT")


def rollback(tx: Transaction) -> None:
    """Undo the SQLite transaction; a no-op if none is open."""
    with suppress(sqlite3.OperationalError):  # "no transaction is active"
        tx.query("ROLLBACK")


@contextmanager
def all_or_nothing(lib: Library) -> Iterator[Transaction]:
    """A root transaction that commits whole or not at all.

    Must not be nested in another ``lib.transaction()`` of the same thread.
    Raises ``sqlite3.OperationalError`` as SQLite does (e.g. "database is
    locked"); after any exception nothing the block wrote is kept.
    """
    with lib.transaction() as tx:
        begin_immediate(tx)
        try:
            yield tx
            commit(tx)
        except BaseException:
            rollback(tx)
            raise


@contextmanager
def rolled_back(lib: Library) -> Iterator[Transaction]:
    """A root transaction that is always rolled back: the block sees its own
    writes, the library keeps none of them (``--pretend``)."""
    with lib.transaction() as tx:
        begin(tx)
        try:
            yield tx
        finally:
            rollback(tx)


def release_interrupted_transaction(lib: Library) -> bool:
    """After a signal raised in this thread (Ctrl-C, SIGTERM, SIGHUP): clear
    what an interrupted ``lib.transaction()`` left, so the run's undo can use
    the library again; True if anything was left.

    beets' ``Transaction.__enter__`` appends itself to the thread's stack and
    then takes the process-wide ``_db_lock``; ``__exit__`` pops it, commits
    and releases. Python raises KeyboardInterrupt between any two bytecodes,
    so a signal inside either leaves the entry or the lock behind, and this
    thread's next transaction waits for the lock forever (found: a Ctrl-C
    test's run hung in its undo). Call it only from the main thread of a
    process in which no other thread uses the library (the ``beet``
    command's run): there a held lock can only be this thread's. beets
    2.10-2.14: ``_tx_stack()``, ``_db_lock``, ``_connection()``; no public
    alternative."""
    with lib._tx_stack() as stack:
        left = bool(stack)
        stack.clear()
    if lib._db_lock.locked():
        left = True
        with suppress(sqlite3.Error):
            lib._connection().rollback()
        lib._db_lock.release()
    return left


# --- models from raw rows ---------------------------------------------------

M = TypeVar("M", bound="Model")


def model_from_row(cls: type[M], db: Any, fixed: dict[str, Any], flex: dict[str, Any]) -> M:
    """A model built from values as stored (a row of its table and its
    flexible attributes), converted lazily as beets does when it fetches.

    beets 2.10-2.11: the private classmethod ``Model._awaken(db, fixed, flex)``;
    beets >= 2.12: ``Model(db, fixed_values=..., flex_values=...)``. On 2.10 the
    keywords would silently become two flexible attributes named
    ``fixed_values``/``flex_values``. The public alternative is
    ``lib.get_item(id)`` (one query per table per item).
    """
    awaken = getattr(cls, "_awaken", None)
    if awaken is not None:
        return awaken(db, fixed, flex)  # type: ignore[no-any-return]
    return cls(db, fixed_values=fixed, flex_values=flex)  # type: ignore[call-arg]


def stored_id(model: Model) -> int:
    """The id of a model read from the library.

    beets >= 2.13 types ``Model.id`` as ``int | None`` (None until added);
    every model fetched from the library has one.
    """
    if model.id is None:
        raise ValueError(f"{type(model).__name__} is not in the library")
    return int(model.id)


# --- dirty flags -------------------------------------------------------------

def dirty_flags(models: Sequence[Model]) -> list[frozenset[str]]:
    """Which fields each model would write on ``store()``.

    beets 2.10-2.14 keep them in ``Model._dirty`` (private), and ``store()``
    clears them as it goes, also inside a transaction that is later rolled
    back: a retry of that store must put them back first
    (``restore_dirty_flags``). No public alternative.
    """
    return [frozenset(getattr(model, "_dirty", ())) for model in models]


def restore_dirty_flags(models: Sequence[Model], flags: Sequence[Iterable[str]]) -> None:
    for model, fields in zip(models, flags):
        model._dirty = set(fields)


# --- display helpers ---------------------------------------------------------

def _find_show_path_changes() -> Any:
    """beets 2.10-2.14: ``beets.ui.commands.move.show_path_changes`` (before
    the commands package split it lived in ``beets.ui.commands``)."""
    for module, name in (("beets.ui.commands.move", "show_path_changes"),
                         ("beets.ui.commands", "show_path_changes")):
        try:
            return getattr(__import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError):
            continue
    return None


def show_path_changes(changes: Iterable[tuple[bytes, bytes]]) -> None:
    """Print path changes the way ``beet move --pretend`` does.

    Without beets' helper (moved in a future release), a plain ``src -> dst``
    line per change: the pretty layout is lost, the command is not.
    """
    helper = _find_show_path_changes()
    if helper is not None:
        helper(list(changes))
        return
    notice("show_path_changes", f"{_beets()} has no show_path_changes: path changes are shown plainly")
    for src, dst in changes:
        ui.print_(f"  {displayable(src)} -> {displayable(dst)}")


def show_model_changes(new: Item, old: Item, fields: Sequence[str]) -> None:
    """Print a tag diff the way ``beet modify`` does.

    beets 2.10-2.14: ``beets.ui.show_model_changes(new, old, fields=...)``
    (public). Without it (or with another signature), a plain
    ``field: old -> new`` line per field.
    """
    helper = getattr(ui, "show_model_changes", None)
    if helper is not None and _accepts(helper, new, old, fields=list(fields)):
        helper(new, old, fields=list(fields))
        return
    notice("show_model_changes", f"{_beets()} has no usable show_model_changes: tag changes are shown plainly")
    ui.print_(format(old))
    for field in fields:
        ui.print_(f"  {field}: {old.get(field)!r} -> {new.get(field)!r}")


def _accepts(func: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return True


# --- beets' web plugin -------------------------------------------------------

def web_app() -> Flask:
    """beets' web app: beets 2.10-2.14 keep one module-level Flask ``app`` in
    ``beetsplug.web`` and configure it only inside ``beet web``. Extensions
    register blueprints on it at load time. No public alternative."""
    from beetsplug.web import app

    return app


def configure_web_app(app: Flask, lib: Library) -> None:
    """What ``beet web`` does to beets' app before serving, minus the server
    (same keys in 2.10-2.14; beets has no WSGI factory)."""
    web = beets.config["web"]
    app.config["lib"] = lib
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    app.config["INCLUDE_PATHS"] = web["include_paths"].get(bool)
    app.config["READONLY"] = web["readonly"].get(bool)
    if web["cors"].get():
        from flask_cors import CORS

        app.config["CORS_ALLOW_HEADERS"] = "Content-Type"
        app.config["CORS_RESOURCES"] = {r"/*": {"origins": web["cors"].get(str)}}
        CORS(app, supports_credentials=web["cors_supports_credentials"].get(bool))
    if web["reverse_proxy"].get(bool):
        from beetsplug.web import ReverseProxied

        app.wsgi_app = ReverseProxied(app.wsgi_app)  # type: ignore[method-assign]


# --- util.move's temporary copies --------------------------------------------

def move_temp_prefix() -> bytes:
    """The prefix of the temp file ``util.move`` copies into across devices.

    beets 2.10-2.14.0: always ``.``. beets >= 2.14.1: the ``tempfile_prefix``
    option (null means ``.``). The full name is
    ``<prefix><basename>.<random>.beets`` beside the destination
    (``tempfile.NamedTemporaryFile``). No public alternative.
    """
    if BEETS_VERSION < (2, 14, 1):
        return b"."
    try:
        value = beets.config["tempfile_prefix"].get()
    except Exception:  # confuse's NotFoundError and friends
        value = None
    return b"." if value is None else os.fsencode(str(value))


def partial_copy_pattern(dst: bytes) -> bytes:
    """A glob for the temp files ``util.move`` leaves beside ``dst`` when it is
    killed mid-copy."""
    directory, name = os.path.split(dst)
    return os.path.join(glob.escape(directory), glob.escape(move_temp_prefix() + name) + b".*.beets")


# --- a run's hot path (issue 12): the same results as beets' per-item calls, for less -----

PF_KEY_DEFAULT = "default"  # the default path format's key in every release

def listens(event: str) -> bool:
    """Whether a loaded plugin listens to ``event``.

    beets 2.10-2.14 keep every listener in the class attribute
    ``BeetsPlugin.listeners`` (event -> list), which ``plugins.send`` walks.
    No public alternative. If that attribute is gone, every event counts as
    listened to: callers then take beets' own (slower, complete) path.
    """
    from beets.plugins import BeetsPlugin

    table = getattr(BeetsPlugin, "listeners", None)
    if not isinstance(table, dict):  # pragma: no cover - a future layout
        notice("listeners", f"{_beets()} keeps plugin listeners elsewhere: tags are written by beets' Item.write")
        return True
    return bool(table.get(event))  # .get: the defaultdict gains no entry


def media_fields() -> frozenset[str]:
    """The item fields ``Item.write`` writes to files.

    beets 2.10-2.14: ``Item._media_fields`` (private), the item fields that
    mediafile can read. Without it, that same intersection computed here.
    """
    known = getattr(library.Item, "_media_fields", None)
    if known is None:  # pragma: no cover - a future layout
        from mediafile import MediaFile

        known = set(MediaFile.readable_fields()) & set(library.Item._fields)
    return frozenset(known)


try:  # public: in beets.library.__all__ in 2.10-2.14
    from beets.library import ReadError, WriteError
except ImportError:  # pragma: no cover - a future layout
    from beets.library.exceptions import ReadError, WriteError  # type: ignore[no-redef]


def path_format_chooser(lib: Library) -> Any:
    """A function giving the destination of an item, as ``item.destination()``
    does, with the library's path-format queries parsed once instead of once
    per item.

    ``Item.destination`` (beets 2.10-2.14) parses every non-default query in
    ``lib.path_formats`` on each call, takes the first format whose query
    matches, else the default one, then evaluates it. Here the choice is made
    with queries parsed up front, and ``destination(path_formats=[(default,
    chosen)])`` (public) does the rest, so templates, ``asciify_paths``,
    ``replace`` and truncation stay beets' own. Must be called where the
    library's paths expand (``music_dir``): a path query needs the root.
    The default format's key is ``"default"`` (``PF_KEY_DEFAULT``, in
    ``beets.library.queries`` up to 2.13, ``beets.util.pathformats`` since).
    """
    formats = list(lib.path_formats)
    queries = [(parse_query_string(query, library.Item)[0], fmt)
               for query, fmt in formats if query != PF_KEY_DEFAULT]
    default = next((fmt for query, fmt in formats if query == PF_KEY_DEFAULT), None)

    def destination(item: Item) -> bytes:
        for query, fmt in queries:
            if query.match(item):
                break
        else:
            if default is None:  # beets asserts the same
                return item.destination()
            fmt = default
        return item.destination(path_formats=[(PF_KEY_DEFAULT, fmt)])

    return destination


def store_many(tx: Transaction, models: Sequence[LibModel]) -> None:
    """``model.store()`` for each model, inside the caller's transaction, as a
    few ``executemany`` statements instead of several statements per model.

    The same rows as beets' ``Model.store`` (2.10-2.14, ``dbcore/db.py``):
    the dirty fixed fields (``_type(key).to_sql(model[key])``) updated, dirty
    flexible attributes inserted (the table replaces on conflict), dirty keys
    that are neither deleted; dirty flags cleared; and, as ``LibModel.store``
    does, ``database_change`` sent for each model. Private names: ``_dirty``,
    ``_fields``, ``_values_flex``, ``_type``, ``_table``, ``_flex_table``.
    The public alternative is ``store()`` per model.
    """
    from beets import plugins

    updates: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = {}
    inserts: dict[str, list[tuple[Any, ...]]] = {}
    deletes: dict[str, list[tuple[Any, ...]]] = {}
    for model in models:
        dirty = set(model._dirty)
        fixed = tuple(sorted(key for key in dirty if key != "id" and key in model._fields))
        if fixed:
            values = [model._type(key).to_sql(model[key]) for key in fixed]
            updates.setdefault((model._table, fixed), []).append((*values, model.id))
        flex = model._values_flex
        for key in dirty.difference(fixed):
            if key in flex:
                inserts.setdefault(model._flex_table, []).append((model.id, key, model._type(key).to_sql(flex[key])))
            else:
                deletes.setdefault(model._flex_table, []).append((model.id, key))
    many = getattr(tx, "mutate_many", None)
    for (table, fields), rows in updates.items():
        _many(tx, many, f"UPDATE {table} SET {','.join(f'{key}=?' for key in fields)} WHERE id=?", rows)
    for table, rows in inserts.items():
        _many(tx, many, f"INSERT INTO {table} (entity_id, key, value) VALUES (?, ?, ?)", rows)
    for table, rows in deletes.items():
        _many(tx, many, f"DELETE FROM {table} WHERE entity_id=? AND key=?", rows)
    for model in models:
        model.clear_dirty()
        lib = model._db
        if lib is not None:
            plugins.send("database_change", lib=lib, model=model)


def set_field(item: Item, key: str, value: Any) -> None:
    """``item[key] = value``, without beets' scan of mediafile's fields.

    beets 2.10-2.14 ``Item.__setitem__``: a ``str`` path becomes bytes (2.10
    also turns a buffer into bytes), a new ``album_id`` drops the cached
    album, ``Model._setitem`` stores the value and marks it dirty, and a
    changed tag field resets ``mtime``; that last check runs ``key in
    MediaFile.fields()``, a generator over mediafile's class attributes (~35
    us for a key that is not a tag, such as ``path`` or a marker). Here the
    tag fields are a set. Tag fields and ``album_id`` still go through
    beets' own ``__setitem__``; so does anything that is not an ``Item``.
    """
    if key in _tag_fields() or key == "album_id" or type(item) is not library.Item:
        item[key] = value
        return
    if key == "path":
        if isinstance(value, str):
            value = util.bytestring_path(value)
        elif isinstance(value, memoryview):
            value = bytes(value)
    _Model._setitem(item, key, value)


@cache
def _tag_fields() -> frozenset[str]:
    from mediafile import MediaFile

    return frozenset(MediaFile.fields())  # after plugins added theirs: the first call is in a run


_getters_lock = threading.Lock()
_getters_users = 0
_getters_kept: dict[str, Any] = {}


@contextmanager
def plugin_getters_fixed() -> Iterator[None]:
    """Within the block, beets' plugin-provided field getters are worked out once.

    beets 2.10-2.14 read every item or album field through ``Model._get``,
    which first calls ``Item._getters()`` / ``Album._getters()``, which call
    ``plugins.item_field_getters()`` / ``album_field_getters()``: each walks
    every loaded plugin and merges their ``template_fields`` into a new dict
    (~3 us), twenty times and more for one item's destination. Plugins and
    their fields are set up when beets loads them and do not change during a
    run, so both are computed once on entry and copies handed out until the
    last user leaves (the functions are module attributes, looked up on each
    call; a server's other threads get the same answer, sooner). No public
    alternative.
    """
    from beets import plugins

    global _getters_users
    with _getters_lock:
        if _getters_users == 0:
            for name in ("item_field_getters", "album_field_getters"):
                original = getattr(plugins, name)
                _getters_kept[name] = original
                setattr(plugins, name, _copies(original()))
        _getters_users += 1
    try:
        yield
    finally:
        with _getters_lock:
            _getters_users -= 1
            if _getters_users == 0:
                for name, original in _getters_kept.items():
                    setattr(plugins, name, original)
                _getters_kept.clear()


def _copies(fixed: dict[str, Any]) -> Any:
    def getters() -> dict[str, Any]:
        return dict(fixed)  # a copy: 2.10's Item._getters adds its own to it

    return getters


_inherited: list[Any] = []  # a forked child's copies of its parent's connections: never used, never closed


def reopen_after_fork(lib: Library) -> None:
    """In a process forked from one that had ``lib`` open: leave the parent's
    SQLite connections alone and open this process's own on first use.

    SQLite must not see a connection used (or closed) on both sides of a
    fork. beets 2.10-2.14 keep one connection per thread in
    ``Database._connections`` and per-thread transaction stacks in
    ``_tx_stacks``, guarded by ``_shared_map_lock`` and ``_db_lock`` (which
    another thread of the parent may have held at the fork). All private; no
    public alternative. The old connections are kept referenced so they are
    never finalized here (the child ends with ``os._exit``).
    """
    import threading
    from collections import defaultdict

    _inherited.extend(getattr(lib, "_connections", {}).values())
    lib._connections = {}
    lib._tx_stacks = defaultdict(list)
    lib._shared_map_lock = threading.Lock()
    lib._db_lock = threading.Lock()


def _many(tx: Transaction, many: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
    if many is not None:  # beets 2.10-2.14: Transaction.mutate_many
        many(statement, rows)
        return
    for row in rows:  # pragma: no cover - a release without it
        tx.mutate(statement, row)


# --- beets' test helpers (tests only; imported lazily: they need pytest) -----

def __getattr__(name: str) -> Any:
    """``TestHelper`` and ``PluginMixin`` from ``beets.test.helper``, the same
    on every supported release.

    beets 2.14 renamed ``temp_dir_path`` to ``temp_path`` and made
    ``TestHelper`` a context manager; 2.10-2.13 have neither. Both are added
    here when missing. Needs pytest (and, on beets <= 2.13, ``responses``).
    """
    if name not in ("TestHelper", "PluginMixin"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from beets.test import helper

    if name == "PluginMixin":
        return helper.PluginMixin
    return _test_helper(helper.TestHelper)


_test_helper_cls: Any = None


def _test_helper(base: Any) -> Any:
    global _test_helper_cls
    if _test_helper_cls is not None:
        return _test_helper_cls
    namespace: dict[str, Any] = {"__doc__": base.__doc__}
    if not hasattr(base, "temp_path"):
        namespace["temp_path"] = property(lambda self: self.temp_dir_path)
    if not hasattr(base, "__enter__"):
        def enter(self: Any) -> Any:
            self.setup_beets()
            return self

        def leave(self: Any, *exc: object) -> bool:
            self.teardown_beets()
            return False

        namespace.update(__enter__=enter, __exit__=leave)
    _test_helper_cls = type("TestHelper", (base,), namespace)
    return _test_helper_cls
