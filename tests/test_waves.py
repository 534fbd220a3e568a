"""Batches are worked in waves (engine.py): sized by the batch's time bound,
also when there is none (the import hook's one batch per task)."""

from __future__ import annotations

import os
from pathlib import Path

from beetsplug.unmarked.engine import FIRST_WAVE

from .audio import make_track, read_tags
from .libenv import LibraryEnv, audio_files

EXTS = ["flac", "ogg", "mp3"]


def test_an_import_task_larger_than_a_wave_is_one_batch(env: LibraryEnv) -> None:
    """The import hook has no time bound (``batch_seconds`` infinite): waves
    after the first are sized from that too, and the task stays one commit."""
    count = 3 * FIRST_WAVE
    env.configure(unmarked={"auto": True})
    album_dir = env.temp_path / "import" / "album"
    for n in range(count):
        make_track(album_dir / f"{n:02d}.{EXTS[n % 3]}", {"title": f"  Song   {n} ft. Guest", "artist": "The  Band",
                                                       "album": "Big  Album", "tracknumber": str(n + 1)})
    env.beet("import", "-A", "-C", "-q", str(album_dir.parent))
    imported = list(env.lib.items())
    assert len(imported) == count
    for item in imported:
        assert item.title.startswith("Song ") and "feat. Guest" in item.title
        assert read_tags(Path(os.fsdecode(item.path)))["title"] == [item.title]
        assert item.path == item.destination()
    stamps = {(item.get("normalized"), item.get("renamed")) for item in imported}
    assert len(stamps) == 1 and None not in next(iter(stamps)), "one marker write for the task"
    assert audio_files(album_dir) == []
