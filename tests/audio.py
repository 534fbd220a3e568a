"""Real audio fixtures: FLAC, OGG Vorbis and MP3 written by libsndfile, tagged by mutagen.

One short clip per format is encoded once per session and copied for each
track, so a test with hundreds of files still takes seconds.
"""

from __future__ import annotations

import shutil
import tempfile
import unicodedata
from functools import cache
from pathlib import Path

import mutagen
import numpy as np
import soundfile
from mutagen.easyid3 import EasyID3
from mutagen.id3 import ID3NoHeaderError

FORMATS = {
    # extension: (libsndfile format, subtype)
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}

# Messy but realistic tags: stray whitespace, decomposed Unicode, "ft." variants.
NFD_BJORK = unicodedata.normalize("NFD", "Björk")
MESSY_TRACKS: list[dict[str, str]] = [
    {"title": "  Hello   World ", "artist": "The  Band", "album": "First  Album "},
    {"title": "Army of Me", "artist": NFD_BJORK, "album": unicodedata.normalize("NFD", "Post Édition")},
    {"title": "Song ft. Someone", "artist": "Main Artist", "album": "Collabs"},
    {"title": "Other Song (Featuring Guest)", "artist": "Main Artist", "album": "Collabs"},
    {"title": "Third FT Guest", "artist": "Main Artist Feat Guest", "album": "Collabs"},
    {"title": "Clean Title", "artist": "Clean Artist", "album": "Clean Album"},
]


@cache
def _clip_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="unmarked-clips-"))


@cache
def _clip(ext: str) -> Path:
    """Encode a 0.25 s, 8 kHz mono tone once per format."""
    fmt, subtype = FORMATS[ext]
    rate = 8000
    t = np.arange(rate // 4) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    path = _clip_dir() / f"clip.{ext}"
    soundfile.write(str(path), tone, rate, format=fmt, subtype=subtype)
    return path


def write_tags(path: Path, tags: dict[str, str]) -> None:
    """Tag a file with mutagen, the way a tagger other than beets would."""
    if path.suffix == ".mp3":
        try:
            audio = EasyID3(str(path))
        except ID3NoHeaderError:
            audio = EasyID3()
        for key, value in tags.items():
            audio[key] = value
        audio.save(str(path))
        return
    audio = mutagen.File(str(path))
    for key, value in tags.items():
        audio[key] = value
    audio.save()


def read_tags(path: Path) -> dict[str, list[str]]:
    """Read text tags back with mutagen (EasyID3 for MP3)."""
    audio = EasyID3(str(path)) if path.suffix == ".mp3" else mutagen.File(str(path))
    return {key: list(audio[key]) for key in audio.keys()}


def make_track(path: Path, tags: dict[str, str]) -> Path:
    """A real, decodable audio file at ``path`` (format from its suffix) with ``tags``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_clip(path.suffix.lstrip(".")), path)
    write_tags(path, tags)
    return path
