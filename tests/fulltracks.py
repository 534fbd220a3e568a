"""Full-length audio fixtures: tens of seconds of noise, tags saved with zero padding.

Noise compresses badly, so the files are the size of real tracks (40 s:
FLAC ~6.5 MB, OGG Vorbis ~2.6 MB, MP3 ~1.6 MB), and a tag that grows makes
mutagen move megabytes of audio. Files saved with zero padding (common: many
taggers and encoders write none) leave no room at all. What matters after a
crash is whether a file still decodes to the same samples, so files are
compared by a hash of their decoded samples, not of their bytes.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import struct
import tempfile
from functools import cache
from pathlib import Path

import mutagen
import numpy as np
from mutagen.easyid3 import EasyID3
from mutagen.id3 import ID3NoHeaderError

EXTS = ("flac", "ogg", "mp3")
SECONDS = 40
RATE = 44100
_FORMATS = {
    "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"), "wav": ("WAV", "PCM_16"), "aiff": ("AIFF", "PCM_16"),
}


def _scratch() -> Path:
    """A temp directory removed when the process ends."""
    path = Path(tempfile.mkdtemp(prefix="unmarked-full-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@cache
def base_track(ext: str, seconds: int = SECONDS) -> Path:
    """Encode ``seconds`` of stereo noise once per format and process (then copy it)."""
    import soundfile

    if ext == "m4a":
        return _mp4(seconds)
    fmt, subtype = _FORMATS[ext]
    rate = 48000 if ext == "opus" else RATE
    noise = np.random.default_rng(seconds).standard_normal((rate * seconds, 2)) * 0.2
    path = _scratch() / f"noise.{ext}"
    extra = {"compression_level": 0.0} if ext in ("ogg", "mp3") else {}  # best quality: bigger files
    soundfile.write(str(path), noise.clip(-1, 1).astype("float32"), rate, format=fmt, subtype=subtype, **extra)
    return path


@cache
def base_samples(ext: str, seconds: int = SECONDS) -> str:
    return samples_hash(base_track(ext, seconds))


def _atom(name: bytes, payload: bytes, version_flags: int | None = None) -> bytes:
    if version_flags is not None:
        payload = struct.pack(">I", version_flags) + payload
    return struct.pack(">I4s", 8 + len(payload), name) + payload


def _mp4(seconds: int) -> Path:
    """An MP4 audio file laid out the way that makes tag growth move the audio
    (``moov`` before ``mdat``), with ``seconds`` worth of random bytes at
    ~350 kbit/s as its one chunk. Nothing here encodes AAC or ALAC, so it does
    not play; what a player would read is the chunk its ``stco`` points at."""
    payload = np.random.default_rng(seconds).bytes(RATE * seconds)

    def moov(offset: int) -> bytes:
        mdhd = _atom(b"mdhd", struct.pack(">IIII", 0, 0, RATE, RATE * seconds) + b"\0" * 4, 0)
        hdlr = _atom(b"hdlr", b"\0" * 4 + b"soun" + b"\0" * 13, 0)
        stco = _atom(b"stco", struct.pack(">II", 1, offset), 0)
        stbl = _atom(b"stbl", _atom(b"stsd", struct.pack(">I", 0), 0) + stco)
        mdia = _atom(b"mdia", mdhd + hdlr + _atom(b"minf", stbl))
        mvhd = _atom(b"mvhd", struct.pack(">IIII", 0, 0, 1000, 1000 * seconds) + b"\0" * 80, 0)
        return _atom(b"moov", mvhd + _atom(b"trak", _atom(b"tkhd", b"\0" * 80, 7) + mdia))

    ftyp = _atom(b"ftyp", b"M4A " + struct.pack(">I", 0) + b"M4A mp42isom")
    offset = len(ftyp) + len(moov(0)) + 8
    path = _scratch() / "noise.m4a"
    path.write_bytes(ftyp + moov(offset) + _atom(b"mdat", payload))
    return path


def _mp4_chunk(path: Path) -> bytes:
    """The bytes the ``stco`` of an ``_mp4`` file points at."""
    from mutagen.mp4 import Atoms

    with open(path, "rb") as f:
        atoms = Atoms(f)
        stco = atoms.path(b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stco")[-1]
        f.seek(stco.offset + 16)
        (offset,) = struct.unpack(">I", f.read(4))
        size = atoms[b"mdat"].length - 8
        f.seek(offset)
        return f.read(size)


def samples_hash(path: Path) -> str:
    """A hash of the decoded audio; raises if the file does not decode."""
    import soundfile

    if path.suffix == ".m4a":
        return hashlib.sha1(_mp4_chunk(path)).hexdigest()

    data, rate = soundfile.read(str(path), dtype="float32")
    return hashlib.sha1(data.tobytes() + str((rate, data.shape)).encode()).hexdigest()


def tag(path: Path, tags: dict[str, str], padding: int | None = 0) -> None:
    """Tag with mutagen as another tagger would; ``padding=0`` leaves no room to grow."""
    pad = None if padding is None else (lambda info: padding)
    if path.suffix == ".m4a":
        audio = mutagen.File(str(path))
        if audio.tags is None:
            audio.add_tags()
        names = {"title": "\xa9nam", "artist": "\xa9ART", "album": "\xa9alb"}
        audio.tags.update({names[key]: [value] for key, value in tags.items()})
        audio.save(padding=pad)
        return
    if path.suffix in (".wav", ".aiff"):  # ID3 in a chunk
        from mutagen.id3 import TALB, TIT2, TPE1

        audio = mutagen.File(str(path))
        if audio.tags is None:
            audio.add_tags()
        frames = {"title": TIT2, "artist": TPE1, "album": TALB}
        for key, value in tags.items():
            audio.tags.add(frames[key](encoding=3, text=[value]))
        audio.save(padding=pad)
        return
    if path.suffix == ".mp3":
        try:
            audio = EasyID3(str(path))
        except ID3NoHeaderError:
            audio = EasyID3()
        audio.update(tags)
        audio.save(str(path), padding=pad)
        return
    audio = mutagen.File(str(path))
    audio.update(tags)
    audio.save(padding=pad)


def full_track(path: Path, tags: dict[str, str], padding: int | None = 0, seconds: int = SECONDS) -> Path:
    """A full-length track at ``path`` (format from its suffix) tagged with ``tags``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base_track(path.suffix.lstrip("."), seconds), path)
    tag(path, tags, padding)
    return path


class SampleCheck:
    """Checks that files decode to their format's original samples, decoding
    only files whose (inode, size, mtime, ctime) changed since their last check:
    ctime moves on every write and cannot be set back, so an unchanged
    signature is an unchanged file."""

    def __init__(self, seconds: int = SECONDS) -> None:
        self.seconds = seconds
        self.checked: dict[Path, tuple[int, ...]] = {}
        self.decoded = 0

    def damaged(self, files: list[Path]) -> list[Path]:
        bad = []
        for path in files:
            info = os.stat(path)
            signature = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if self.checked.get(path) == signature:
                continue
            self.decoded += 1
            try:
                same = samples_hash(path) == base_samples(path.suffix.lstrip("."), self.seconds)
            except Exception:  # does not decode at all
                same = False
            if same:
                self.checked[path] = signature
            else:
                self.checked.pop(path, None)
                bad.append(path)
        return bad
