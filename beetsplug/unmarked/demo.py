"""A demo library of real audio files with messy tags, and a run over it.

    beets-unmarked-demo [--dir unmarked-demo] [--tracks 120] [--web [--port 8337]]

generates FLAC, OGG Vorbis and MP3 files (libsndfile via ``soundfile``) with
stray whitespace, decomposed Unicode and "ft." variants in their tags, imports
them as-is without copying (``beet import -A -C``), then runs
``beet process-unmarked`` on them. With ``--web`` it leaves them unprocessed,
enables beets' ``web`` plugin (changes allowed, on this machine only), prints
the page's address and serves it until Ctrl-C. The tests reuse the file generator.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import unicodedata
from functools import cache
from pathlib import Path

import yaml

FORMATS = {
    # extension: (libsndfile format, subtype)
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


@cache
def _clip(ext: str) -> bytes:
    """Encode a 0.25 s, 8 kHz mono tone once per format (then copy its bytes).

    Encoded in memory: nothing is left in the temp directory."""
    import numpy as np
    import soundfile

    fmt, subtype = FORMATS[ext]
    rate = 8000
    t = np.arange(rate // 4) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, tone, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def write_tags(path: Path, tags: dict[str, str]) -> None:
    """Tag a file with mutagen, the way a tagger other than beets would."""
    import mutagen
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3NoHeaderError

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


def make_track(path: Path, tags: dict[str, str]) -> Path:
    """A real, decodable audio file at ``path`` (format from its suffix) with ``tags``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_clip(path.suffix.lstrip(".")))
    write_tags(path, tags)
    return path


def _nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


ARTISTS = ["  Sigur  Rós", _nfd("Björk"), "The Beatles", "Daft  Punk ", _nfd("Motörhead"), "Nina Simone"]
GUESTS = ["ft. Guest", "Feat Someone", "featuring A Friend", "FT. Another"]
WORDS = ["Hello", "Night", "Élan", "River", "Glass", "Echo", "Motion", "Quiet"]


def messy_tags(rng: random.Random, number: int) -> tuple[str, dict[str, str]]:
    """(album directory, tags) for one track, messy in the ways users meet."""
    artist = rng.choice(ARTISTS)
    album = f"{rng.choice(WORDS)}  {rng.choice(WORDS)} "
    title = f" {rng.choice(WORDS)}   {rng.choice(WORDS)}"
    if rng.random() < 0.3:
        title += " " + rng.choice(GUESTS)
    if rng.random() < 0.3:
        title = _nfd(title)
    tags = {"artist": artist, "album": album, "title": title, "tracknumber": str(number % 12 + 1)}
    return f"{artist.strip()} - {album.strip()}", tags


def generate(root: Path, count: int, seed: int = 7, web: bool = False) -> Path:
    """Write ``count`` tracks under ``root/incoming/<album>/`` and a beets config
    (with ``web``: beets' web plugin too, allowed to change the library)."""
    rng = random.Random(seed)
    incoming = root / "incoming"
    exts = list(FORMATS)
    for number in range(count):
        album_dir, tags = messy_tags(rng, number)
        make_track(incoming / album_dir / f"{number:04d}.{exts[number % 3]}", tags)
    settings = {
        "directory": str(root / "music"),
        "library": str(root / "library.db"),
        "plugins": ["unmarked", "web"] if web else ["unmarked"],
        "create_backup_before_migrations": False,
        "import": {"write": False},
    }
    if web:
        settings["web"] = {"readonly": False, "host": "127.0.0.1"}
    (root / "config.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    return incoming


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a messy demo library and tidy it.")
    parser.add_argument("--dir", default="unmarked-demo", help="where to create it (replaced)")
    parser.add_argument("--tracks", type=int, default=120)
    parser.add_argument("--web", action="store_true",
                        help="leave the tracks unprocessed and serve the browser page (beet web)")
    parser.add_argument("--port", type=int, default=8337, help="the page's port with --web")
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"Generating {args.tracks} FLAC/OGG/MP3 tracks with messy tags in {root}/incoming ...")
    incoming = generate(root, args.tracks, web=args.web)
    beet = shutil.which("beet", path=os.path.dirname(sys.executable)) or "beet"
    env = {**os.environ, "BEETSDIR": str(root)}

    def run(*words: str) -> None:
        print(f"\n$ BEETSDIR={root} beet {' '.join(words)}", flush=True)
        subprocess.run([beet, *words], env=env, check=False)

    imported = subprocess.run([beet, "import", "-A", "-C", "-q", str(incoming)], env=env,
                              capture_output=True, text=True)
    if imported.returncode:
        sys.exit(f"beet import failed:\n{imported.stderr}")
    run("stats", "unmarked:true")
    run("ls", "-f", "$title | $artist | $path", "unmarked:true", "track:1")
    if args.web:
        serve(beet, env, root, args.port)
        return
    run("process-unmarked")
    run("ls", "-f", "$title | $artist | $path", "track:1")
    run("stats", "unmarked:true")
    print(f"\nDone. Try: BEETSDIR={root} beet ls unmarked:false")


def serve(beet: str, env: dict[str, str], root: Path, port: int) -> None:
    """``beet web`` on this machine only, until Ctrl-C; the tracks stay unprocessed."""
    print(f"\nThe page: http://127.0.0.1:{port}/unmarked  (Ctrl-C stops the server)")
    print(f"Same as: BEETSDIR={root} beet web 127.0.0.1 {port}", flush=True)
    try:
        subprocess.run([beet, "web", "127.0.0.1", str(port)], env=env, check=False)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
