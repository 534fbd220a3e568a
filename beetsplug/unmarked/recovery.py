"""After an interruption: where a moved file is, what a killed move left
behind, and taking a tag write back field by field.

The engine's undo (undo.py) and the next run's repair (repair.py) both work
from these, so a file is found, cleaned up and put back the same way
whichever of them gets to it.
"""

from __future__ import annotations

import filecmp
import glob
import os
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from beets import util
from beets.util import FilesystemError
from mediafile import MediaFile, UnreadableFileError

from .beets_compat import ReadError, partial_copy_pattern
from .files import write_fields

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

# --- a write taken back ----------------------------------------------------------------


def put_back_fields(path: bytes, changes: Mapping[str, Sequence[Any]], wanted: Mapping[str, Any],
                    id3v23: bool) -> list[str]:
    """Take back a tag write of ``changes`` (``{field: [old, new]}``, as its
    plan and its journal entry have them) and nothing else: each of those
    fields that the file still holds the new value of gets ``wanted[field]``
    (the library's value now: the old one, unless the write was recorded);
    a field the file holds another value of (the write never reached it, or
    someone wrote it since) and every other tag of the file - what taggers
    and players wrote there, which the library may not hold - stay as they
    are. Returns the fields written (untearably, as ``write_fields``)."""
    target = util.syspath(path)
    try:
        mediafile = MediaFile(target, id3v23=id3v23)
    except UnreadableFileError as exc:
        raise ReadError(path, exc) from exc
    back = {}
    for field, (old, new) in changes.items():
        value = wanted.get(field, old)
        if same_value(getattr(mediafile, field, None), new) and not same_value(value, new):
            back[field] = value
    if back:
        write_fields(path, back, id3v23)
    return sorted(back)


def same_value(held: Any, value: Any) -> bool:
    """A tag as mediafile reads it is the value written (an empty tag reads as None)."""
    return held == value or (held in (None, "") and value in (None, ""))


# --- moves -----------------------------------------------------------------------


def where_after_failed_move(src: bytes, dst: bytes, exc: BaseException | None = None) -> str:
    """Where the file is after a move from ``src`` to ``dst`` raised ``exc``
    (or was interrupted): ``"src"`` or ``"dst"``, with no partial copy left
    and never both. Raises ``OSError`` when that cannot be made so.

    A move refused because ``dst`` exists did nothing: whatever is at ``dst``
    belongs to another program, even a byte-identical file (a duplicate
    import's), so it is not taken for our own unfinished copy."""
    if refused_as_taken(exc):
        return "src"
    remove_partial_copies(dst)
    at_src, at_dst = os.path.exists(util.syspath(src)), os.path.exists(util.syspath(dst))
    if at_src and at_dst:
        # Across devices the copy finished but the source was not removed yet.
        if filecmp.cmp(util.syspath(src), util.syspath(dst), shallow=False):
            os.remove(util.syspath(dst))
        return "src"  # (a different file at dst is not ours)
    return "dst" if at_dst else "src"


def refused_as_taken(exc: BaseException | None) -> bool:
    """beets' ``util.move`` refused before touching anything: ``dst`` exists."""
    return isinstance(exc, FilesystemError) and exc.reason == "file exists"


# --- what a killed move leaves -----------------------------------------------------


def remove_partial_copies(dst: bytes) -> list[bytes]:
    """Delete the temp files ``util.move`` leaves when killed mid-copy across devices."""
    removed = []
    for leftover in glob.glob(partial_copy_pattern(dst)):
        with suppress(FileNotFoundError):
            os.remove(leftover)
            removed.append(leftover)
    return removed
