"""Files: unique names, tag writes a kill cannot tear, and what a killed write leaves.

The untearable tag write
------------------------
mutagen writes tags in place. A tag that fits the file's padding is one small
write over the old tag; one that does not makes mutagen shift the whole audio
payload inside the same file (``insert_bytes``/``resize_bytes``), and a
process killed in that window leaves a file that no longer decodes to the
same samples. ``write_tags`` keeps beets' ``Item.write`` (its ``write`` and
``after_write`` events, mediafile's field mapping) and adds only a backup:

* fits in the padding: written in place, as beets would (same inode, one write);
* needs a resize, or the format cannot tell before it writes: a backup copy
  of the file first, then mutagen's own write in place, into the same inode:

  1. the backup: ``.<name>.unmarked-<8 hex>.bak`` beside the file (a reflink
     where the filesystem can, else a copy), written under a ``.tmp`` name,
     flushed (``fdatasync``), renamed to ``.bak`` and its directory flushed:
     a ``.bak`` is always whole, and on disk before the file changes;
  2. the write: through the descriptor the backup was made of (a rename by
     another program meanwhile cannot send it to another file), then
     ``fsync``. An error on the way (disk full) puts the file's bytes back
     from the backup and says "the file is unchanged";
  3. the backup goes once the write is recorded: ``write_tags`` and
     ``write_fields`` remove it when they return; the engine's worker keeps it
     (``keep_backup``) and reports it, and the engine removes it after the
     batch's commit, and syncs that removal, before it forgets the journal
     entry (a backup a power cut brought back would have nothing to find it).

  So the file keeps its inode, its other hard links see the new tags, and
  owner, mode, extended attributes and ACLs stay: nothing but the file's
  bytes changes, as with ``beet write``.

A kill between 1 and 3 may leave the file torn until the next run. The write
is journaled first (a TAGS intent, journal.py), so it is put back from the
backup *in place* (``restore_backup``: opened, overwritten, cut to length,
flushed; inode and links stay) by whoever gets there first: the run's own
undo (undo.py: a write its worker did not report done) or the next run's
repair (repair.py). Neither restores a write known complete - reported by
the worker, or (after a crash) held by the library's commit, which comes only
after the report; then the backup is simply removed (``settle_backups``).
Temp files of an interrupted backup, and the ``.tmp`` copies of the copy
route of earlier releases, are removed, never restored from.

A directory that refuses new files (read-only to this user, immutable): the
backup goes to the spare directory instead, ``<job store>.backups`` beside
the job store (``spare_directory``: a run can always write there; another
filesystem, so a copy, not a reflink). Each TAGS intent records that
directory, and a backup there is named by a hash of the file's real path, so
the repair finds it. When no backup can be made at all (the spare directory
cannot be made either), the file is written in place as ``beet write`` would
and a warning says it is not protected against a kill during the write.
A full disk beside the file is an error instead ("cannot make a backup
copy ...; the file is unchanged"): the write is not tried.

How "fits" is known without re-implementing mediafile: every mutagen writer
listed below asks ``PaddingInfo._get_padding`` how much padding to leave
*before it writes a byte*; ``PaddingInfo.padding < 0`` means the new tag is
larger than the room it has. While a write tries the in-place route, a hook on
that method answers "keep exactly the padding there is" when it fits (so the
file keeps its size: mutagen's default would shrink padding above ~10 KiB,
which is a resize too) and raises ``_NeedsResize`` when it does not; nothing
has been written yet, so the backup is made of the untouched file.
The hooks are installed once and do nothing outside ``write_tags`` (a context
variable says which file this thread is writing).

Checked in mutagen 1.48's source (tests/test_files.py pins the behaviour):

* ID3 in MP3 (``id3/_file.py`` ``ID3.save``): ``_prepare_data`` consults
  PaddingInfo, then ``insert_bytes``/``delete_bytes``, then writes; the ID3v1
  update that follows rewrites the last 128 bytes in place.
* ID3 in AIFF and WAVE (``_iff.py`` ``IffID3.save``, ``wave.py``
  ``_WaveID3.save``): ``_prepare_data`` comes before ``chunk.resize`` - but a
  file without an ID3 chunk gets one inserted (``insert_chunk``) *before* the
  padding question, so those are backed up first.
* FLAC (``flac.py`` ``FLAC._save``): ``MetadataBlock._writeblocks`` consults
  PaddingInfo, then ``resize_bytes``, then writes. Padding blocks are capped at
  16 MiB, so more padding than that is treated as "does not fit".
* Ogg Vorbis and Opus (``oggvorbis.py``/``oggopus.py`` ``_inject``): padding is
  decided, then ``OggPage.replace`` rewrites pages, resizing only if a page
  changed size (it cannot when the comment packet keeps its length). An Opus
  file whose comment packet carries extra data (``_pad_data``) never consults
  PaddingInfo: backed up first.
* MP4/M4A (``mp4/__init__.py`` ``__save_existing``/``__save_new``): padding
  decided before ``resize_bytes``/``insert_bytes``.

Every other format mediafile writes is backed up first: the APEv2-based
ones (Monkey's Audio, WavPack, Musepack) never consult PaddingInfo; ASF and
DSF do, but DSF may rewrite its header before the question and ASF's padding
accounting is not covered by a test here.

``write_fields`` takes the same routes for a write of the changed fields
only (what the engine does unless a plugin edits tags on beets' ``write``
event): MediaFile, the fields set, ``save()`` - no beets item, so the run's
helper process (helper.py) can do it.

Costs and limits: a resizing write copies the whole file once (a reflink
makes it nearly free) and flushes it, its directory and then the file itself
(three fsyncs; the fitting write has none, as beets'), then mutagen's own
in-place resize moves the audio once more; afterwards the file has mutagen's
default padding, so the next write fits in place. A symlinked item has its
target written, the link stays. A ``write`` listener that saves the file
through mediafile takes the same route; one that edits it with mutagen
directly (scrub's tag removal) is outside this guarantee.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import io
import os
import secrets
import threading
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from beets import logging, util
from mediafile import MediaFile, UnreadableFileError
from mutagen import PaddingInfo
from mutagen._util import FileThing

from .beets_compat import ReadError, WriteError
from .moves import sync_dirs

if TYPE_CHECKING:
    from collections.abc import Mapping

    from beets.library import Item

# --- the untearable tag write ----------------------------------------------------

TEMP_MARK = b".unmarked-"
TEMP_SUFFIX = b".tmp"  # a backup being written (and the copy route of earlier releases): never restored from
BACKUP_SUFFIX = b".bak"
_RANDOM_CHARS = 8  # secrets.token_hex(4)
_NAME_MAX = 255  # bytes in one file name on every filesystem we expect
_STEM_MAX = _NAME_MAX - 1 - len(TEMP_MARK) - _RANDOM_CHARS - len(TEMP_SUFFIX)
_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
_KEEP_AT_MOST = (1 << 24) - 1  # the largest padding every format above can keep as is (FLAC's block limit)
# errnos meaning "this filesystem or kernel cannot do that", not "it went wrong"
_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF}
# errnos meaning "no file may be made here": the backup goes to the spare directory instead
_REFUSED = {errno.EACCES, errno.EPERM, errno.EROFS}

Route = Literal["in place", "backed up", "unprotected"]


class _NeedsResize(BaseException):
    """Raised by the padding hook before mutagen writes anything.

    A BaseException so that no ``except Exception`` on the way up (mutagen's
    error conversion, mediafile's ``mutagen_call``) rewraps it; it never leaves
    this module.
    """


@dataclass
class _Write:
    """The tag write this context is doing (set by ``write_tags``)."""

    path: bytes  # the file, as MediaFile names it (fs-encoded)
    spare: bytes | None = None  # where the backup goes when the file's directory refuses it
    trying_in_place: bool = False
    asked: bool = False  # the padding hook was consulted
    route: Route = "in place"
    backup: bytes | None = None  # the backup of a resizing write, while it is kept
    warning: str | None = None  # the write was not protected against a kill: why


@dataclass(frozen=True)
class Written:
    """What a tag write did: its route, the backup it keeps (``keep_backup``:
    the caller removes it with ``drop_backup`` once the write is recorded)
    and, for an unprotected write, a warning saying why."""

    route: Route
    backup: bytes | None = None
    warning: str | None = None


_CURRENT: ContextVar[_Write | None] = ContextVar("unmarked_tag_write", default=None)
_install_lock = threading.Lock()
_originals: dict[str, Any] = {}
# In place is trusted only while mutagen asks PaddingInfo as checked above;
# if it ever writes without asking, every later write is backed up first.
_trust = {"in_place": hasattr(PaddingInfo, "_get_padding")}
_log = logging.getLogger("beets.unmarked")


def write_tags(item: Item, *, spare: bytes | None = None) -> Written:
    """``Item.write()`` that a kill cannot tear; returns what it did.

    Errors are beets' own: ``ReadError``/``WriteError`` naming the item's file
    (a missing file is a ``ReadError``). When the backup cannot be made for
    another reason than a refusing directory (disk full) the error says so and
    the file is unchanged. The backup is removed once the write is done.
    """
    _install()
    write = _Write(os.fsencode(util.syspath(item.path)), spare)
    token = _CURRENT.set(write)
    try:
        item.write()
    finally:
        _CURRENT.reset(token)
    return _finished(write, keep_backup=False)


class TagsChanged(OSError):
    """The file's tags are not what the write expects them to be: another
    tool wrote them since (an undo never writes over that). An ``OSError``
    so that it is reported as a file's trouble, by its message."""


def _same_tag(now: Any, expected: Any) -> bool:
    if not now and not expected:  # (mediafile reads an absent text tag as None or "")
        return True
    return now == expected or (not isinstance(now, str) and str(now) == str(expected))


def write_fields(path: bytes, tags: Mapping[str, Any], id3v23: bool, *, spare: bytes | None = None,
                 keep_backup: bool = False, expect: Mapping[str, Any] | None = None) -> Written:
    """Write only ``tags`` (mediafile field -> value; None deletes) to the
    file at ``path``, by the same untearable routes; returns what it did.

    What ``Item.write`` does with the file, restricted to these fields:
    ``MediaFile(path, id3v23=...)``, ``update(tags)``, ``save()``, with beets'
    errors (``ReadError`` when the file cannot be read, ``WriteError`` when it
    cannot be saved; the file is unchanged then). mediafile sets each field it
    is given and leaves the others as they are, so this costs a fraction of a
    full write (~0.2 ms vs ~1.1 ms a file). beets' ``write`` and
    ``after_write`` events are the caller's to send: a process with no other
    plugin state than mediafile's can run this.

    ``spare``: where a backup goes when the file's directory refuses one.
    ``keep_backup``: the backup of a resizing write stays (``Written.backup``)
    until the caller drops it: the engine, once its commit records the write;
    an unprotected write's warning is then the caller's to log.
    ``expect``: what those fields must hold in the file now (an undo: what its
    job wrote), else ``TagsChanged`` and nothing is written.
    """
    _install()
    target = util.syspath(path)
    write = _Write(os.fsencode(target), spare)
    token = _CURRENT.set(write)
    try:
        try:
            mediafile = MediaFile(target, id3v23=id3v23)
        except UnreadableFileError as exc:
            raise ReadError(path, exc) from exc
        changed = [key for key, value in (expect or {}).items() if not _same_tag(getattr(mediafile, key, None), value)]
        if changed:
            raise TagsChanged(f"{util.displayable_path(path)}: {', '.join(changed)} in the file changed since "
                              "(another tool wrote them); left as it is")
        _update(mediafile, tags)
        try:
            mediafile.save()
        except UnreadableFileError as exc:
            raise WriteError(path, exc) from exc
    finally:
        _CURRENT.reset(token)
    return _finished(write, keep_backup)


def _finished(write: _Write, keep_backup: bool) -> Written:
    """The write is done and on disk: its backup goes, unless the caller keeps it."""
    if write.backup is not None and not keep_backup:
        drop_backup(write.backup)
        write.backup = None
    if write.warning is not None and not keep_backup:
        _log.warning("{}", write.warning)
    return Written(write.route, write.backup, write.warning)


def _update(mediafile: MediaFile, tags: Mapping[str, Any]) -> None:
    """``MediaFile.update(tags)``: each field in mediafile's order, None
    deletes. mediafile works that order out on every call (~30 us); it only
    changes when a plugin adds a field, so it is kept until a field is missing."""
    order = _field_order()
    if any(field not in order for field in tags):
        _field_order.cache_clear()
        order = _field_order()
    for field in sorted((field for field in tags if field in order), key=order.__getitem__):
        if tags[field] is None:
            delattr(mediafile, field)
        else:
            setattr(mediafile, field, tags[field])


@cache
def _field_order() -> dict[str, int]:
    return {field: n for n, field in enumerate(MediaFile.sorted_fields())}


def _install() -> None:
    """Wrap ``PaddingInfo._get_padding`` and ``MediaFile.save``, once per process."""
    if _originals:
        return
    with _install_lock:
        if _originals:
            return
        _originals["padding"] = PaddingInfo._get_padding
        _originals["save"] = MediaFile.save
        PaddingInfo._get_padding = _get_padding  # type: ignore[method-assign]
        MediaFile.save = _save  # type: ignore[method-assign]


def _get_padding(info: PaddingInfo, user_func: Any) -> int:
    write = _CURRENT.get()
    if write is None or not write.trying_in_place:
        return _originals["padding"](info, user_func)
    write.asked = True
    if 0 <= info.padding <= _KEEP_AT_MOST:
        return info.padding  # the same room as before: the file keeps its size
    raise _NeedsResize


def _save(mf: MediaFile, **kwargs: Any) -> None:
    """``MediaFile.save``: in place if it fits, else in place behind a
    backup. Only for the file ``write_tags`` is writing (also when a ``write``
    listener saves it through mediafile); any other save is mediafile's own."""
    save = _originals["save"]
    write = _CURRENT.get()
    if write is None or os.fsencode(mf.filename) != write.path:
        return save(mf, **kwargs)
    if _trust["in_place"] and _decides_before_writing(mf.mgfile):
        write.trying_in_place, write.asked = True, False
        try:
            save(mf, **kwargs)
        except _NeedsResize:
            pass  # nothing was written
        else:
            if not write.asked:  # this mutagen is not the one checked: stop trusting it
                _trust["in_place"] = False
                _log.warning("mutagen wrote the tags of {} in place without asking about padding; "
                             "from now on every tag write is backed up first", mf.filename)
            return None
        finally:
            write.trying_in_place = False
    _save_behind_a_backup(mf, save, kwargs, write)
    return None


def _decides_before_writing(mgfile: Any) -> bool:
    """Whether this file's mutagen writer asks PaddingInfo before any write
    (see the module docstring for where each was checked)."""
    always, opus, id3_chunk = _checked_kinds()
    kind = type(mgfile)
    if kind in always:
        return True
    if kind is opus:  # unless its comment packet carries extra data
        return not getattr(mgfile.tags, "_pad_data", b"unknown")
    if kind in id3_chunk:  # tags read from an ID3 chunk (without one, mutagen inserts it first)
        return getattr(mgfile.tags, "_header", None) is not None
    return False


@cache
def _checked_kinds() -> tuple[tuple[type, ...], type, tuple[type, ...]]:
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.mp3 import MP3
    from mutagen.mp4 import MP4
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from mutagen.wave import WAVE

    return (MP3, FLAC, OggVorbis, MP4), OggOpus, (AIFF, WAVE)


def _save_behind_a_backup(mf: MediaFile, save: Any, kwargs: dict[str, Any], write: _Write) -> None:
    """The resizing write: a backup of the file first (durable), then
    mutagen's own write in place (the same inode), flushed. An error or an
    interrupt during the write puts the file's bytes back from the backup."""
    name = mf.filename
    target = os.path.realpath(os.fsencode(name))  # a symlink stays; its target is written
    # Opened for writing on purpose: a file we could not write in place
    # (read-only, immutable, read-only mount) gets no backup either.
    try:
        original = _WholeWrites(target, "r+")
    except OSError as exc:
        raise UnreadableFileError(name, f"{exc.strerror or exc}; the file is unchanged") from exc
    with original:
        try:
            write.backup = _backup(original.fileno(), target, write.spare)
        except OSError as exc:
            raise UnreadableFileError(name, f"cannot make a backup copy to write the tags behind "
                                            f"({exc.strerror or exc}); the file is unchanged") from exc
        original.seek(0)  # (the copy moved the descriptor's offset)
        if write.backup is None:
            write.route = "unprotected"
            write.warning = (f"{os.fsdecode(target)}: no backup copy could be made (neither beside it nor in "
                             f"{os.fsdecode(write.spare or b'a spare directory')}); its tags were written in "
                             "place as beets' write does, not protected against a kill during the write")
        else:
            write.route = "backed up"
        # mutagen writes through our descriptor: into the inode that was backed up, even if
        # another program renames the file meanwhile.
        kept, mf.filething = mf.filething, FileThing(original, None, name)  # (no name: not reopened)
        try:
            try:
                save(mf, **kwargs)
            finally:
                mf.filething = kept
            os.fsync(original.fileno())
        except BaseException as exc:
            if write.backup is not None:
                _put_back(write, original.fileno())
            if write.route == "unprotected":
                outcome = "the file may be damaged (no backup copy could be made)"
            elif write.backup is None:
                outcome = "the file is unchanged"  # (put back from its backup)
            else:
                outcome = (f"the file could not be put back from its backup copy {os.fsdecode(write.backup)}: "
                           "copy that over it")
            if isinstance(exc, UnreadableFileError):
                raise UnreadableFileError(name, f"{exc.args[0]}; {outcome}") from exc
            if isinstance(exc, OSError):
                raise UnreadableFileError(name, f"{exc.strerror or exc}; {outcome}") from exc
            raise


class _WholeWrites(io.FileIO):
    """An unbuffered file (what mutagen writes is in the file when it returns,
    so the flush and a put-back come after all of it) whose ``write`` writes
    everything or raises, as mutagen expects of a file object (a full disk:
    ``OSError``, where a plain unbuffered write would return a short count)."""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        while view:
            written = super().write(view)
            if not written:
                raise OSError(errno.EIO, "the write made no progress", self.name)
            view = view[written:]
        return len(data)


def _put_back(write: _Write, fd: int) -> None:
    """A write failed or was interrupted: the file's bytes from the backup. If
    that fails too, the backup stays for the undo or the next run's repair."""
    assert write.backup is not None
    try:
        _restore_into(write.backup, fd)
    except OSError:
        _log.debug("could not put {} back from its backup", os.fsdecode(write.path), exc_info=True)
        return
    drop_backup(write.backup)
    write.backup = None


def _backup(src: int, target: bytes, spare: bytes | None) -> bytes | None:
    """A durable copy of the open file ``src`` (at ``target``): beside it
    under a hidden name, else (that directory refuses new files) in
    ``spare``; None if neither can hold one. Any other failure beside the
    file (disk full) raises: the write is not done, the file is unchanged."""
    directory, name = os.path.split(target)
    places = [(directory, _temp_prefix(name))]
    if spare is not None:
        places.append((spare, _spare_prefix(target)))
    for place, prefix in places:
        try:
            return _backup_in(src, place, prefix, spare=place == spare)
        except OSError as exc:
            if exc.errno in _REFUSED or place == spare:  # (a spare that cannot hold it: no backup at all)
                continue
            raise
    return None


def _backup_in(src: int, directory: bytes, prefix: bytes, spare: bool) -> bytes:
    """A copy of ``src`` in ``directory``, its data and its name on disk. It
    is written under a temp name and renamed to its backup name only once
    whole: a backup is always complete (a kill during the copy leaves a temp
    file, which is removed, never restored from)."""
    if spare:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temp = _create_temp(directory, prefix, TEMP_SUFFIX)
    backup = temp[:-len(TEMP_SUFFIX)] + BACKUP_SUFFIX
    try:
        try:
            _clone_or_copy(src, fd)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(temp, backup)
        sync_dirs([directory])  # the backup's name is on disk before the file changes
    except BaseException:
        for leftover in (temp, backup):
            with suppress(OSError):
                os.remove(leftover)
        raise
    return backup


def restore_backup(backup: bytes, target: bytes) -> None:
    """Put the bytes of ``backup`` back into the file at ``target`` in place
    (opened, overwritten, cut to length, flushed): its inode, hard links,
    owner, mode, extended attributes and ACLs stay what they are."""
    fd = os.open(target, os.O_RDWR | os.O_CLOEXEC)
    try:
        _restore_into(backup, fd)
    finally:
        os.close(fd)


def _restore_into(backup: bytes, fd: int) -> None:
    with open(backup, "rb") as src:
        os.lseek(fd, 0, os.SEEK_SET)
        _clone_or_copy(src.fileno(), fd)
        os.ftruncate(fd, os.fstat(src.fileno()).st_size)
        os.fsync(fd)


def drop_backup(backup: bytes) -> bool:
    """Remove a backup whose write is recorded or undone; False if it stays (an error is logged)."""
    try:
        os.remove(backup)
    except FileNotFoundError:
        pass
    except OSError as exc:
        _log.warning("could not remove the backup copy {}: {}", os.fsdecode(backup), exc.strerror or exc)
        return False
    return True


def spare_directory(store_path: str | bytes) -> bytes:
    """Where backups go whose file's directory refuses them: beside the job
    store (a directory a run can always write to), ``<store>.backups``."""
    path = os.fsencode(store_path)
    stem = path[:-3] if path.endswith(b".db") else path
    return stem + b".backups"


def _create_temp(directory: bytes, prefix: bytes, suffix: bytes) -> tuple[int, bytes]:
    for _ in range(100):
        temp = os.path.join(directory, prefix + secrets.token_hex(4).encode() + suffix)
        try:
            return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), temp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.fsdecode(directory))


def _temp_prefix(name: bytes) -> bytes:
    """``.<name>.unmarked-``, the name cut so the whole fits in 255 bytes."""
    return b"." + name[:_STEM_MAX] + TEMP_MARK


def _spare_prefix(target: bytes) -> bytes:
    """A backup's name in the spare directory: a hash of the file's real path."""
    return hashlib.sha256(target).hexdigest()[:32].encode() + TEMP_MARK


def _clone_or_copy(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, _FICLONE, src)
        return
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    copied = 0
    try:
        while chunk := os.copy_file_range(src, dst, 1 << 30):
            copied += chunk
        return
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED or copied:
            raise
    while data := os.read(src, 1 << 20):
        view = memoryview(data)
        while view:
            view = view[os.write(dst, view):]


# --- what a killed write leaves --------------------------------------------------


def stale_temps(path: bytes, spare: bytes | None = None) -> list[bytes]:
    """What killed writes of ``path`` left: temp files (an unfinished backup,
    the copy route of earlier releases) and backups, beside it (or beside its symlink's target) and in ``spare``."""
    found: list[bytes] = []
    for place in dict.fromkeys([path, os.path.realpath(path)]):
        directory, name = os.path.split(place)
        for suffix in (TEMP_SUFFIX, BACKUP_SUFFIX):
            pattern = glob.escape(_temp_prefix(name)) + b"?" * _RANDOM_CHARS + suffix
            found += glob.glob(os.path.join(glob.escape(directory), pattern))
        if spare is not None:
            pattern = glob.escape(_spare_prefix(place)) + b"?" * _RANDOM_CHARS + BACKUP_SUFFIX
            found += glob.glob(os.path.join(glob.escape(spare), pattern))
    return sorted(set(found))


def remove_stale_temps(path: bytes, spare: bytes | None = None) -> list[bytes]:
    """Delete what ``stale_temps`` finds, the removals synced (a power cut must
    not bring back a leftover after the journal entry that finds it is gone);
    return what was deleted."""
    removed = []
    for temp in stale_temps(path, spare):
        with suppress(FileNotFoundError):
            os.remove(temp)
            removed.append(temp)
    sync_dirs({os.path.dirname(temp) for temp in removed})  # (one gone meanwhile is skipped)
    return removed


def settle_backups(path: bytes, spare: bytes | None, *, complete: bool) -> bytes | None:
    """After a write of ``path`` that was interrupted or not recorded: unless
    it is known ``complete`` (the worker reported it, or the library's commit
    holds its values), the file's bytes come back from its newest backup, in
    place; then every backup and old temp file of it goes. Returns the backup
    restored from. A file no longer at ``path`` was moved, which happens only
    after its write completed: nothing to restore."""
    backups = [b for b in stale_temps(path, spare) if b.endswith(BACKUP_SUFFIX)]
    restored = None
    if backups and not complete and os.path.exists(path):
        restored = max(backups, key=lambda b: os.stat(b).st_mtime_ns)
        restore_backup(restored, os.path.realpath(path))
    remove_stale_temps(path, spare)
    return restored
