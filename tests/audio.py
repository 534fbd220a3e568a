"""Real audio fixtures: FLAC, OGG Vorbis and MP3 written by libsndfile, tagged by mutagen.

The generator lives in the package (the demo uses it too); this adds the messy
fixture tags and a reader.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import mutagen
from mutagen.easyid3 import EasyID3

from beetsplug.unmarked.demo import make_track, write_tags

__all__ = ["MESSY_TRACKS", "NFD_BJORK", "make_track", "read_tags", "write_tags"]

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


def read_tags(path: Path) -> dict[str, list[str]]:
    """Read text tags back with mutagen (EasyID3 for MP3)."""
    audio = EasyID3(str(path)) if path.suffix == ".mp3" else mutagen.File(str(path))
    return {key: list(audio[key]) for key in audio.keys()}
