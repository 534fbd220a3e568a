"""Two builds of the plugin on the same library, paired: did a change make it slower?

    python bench/paired_bench.py --beet /path/to/old/venv/bin/beet --sizes 1000 5000 --reps 5 --albums

``--beet`` names the other build's ``beet`` (a virtualenv with that checkout
installed); this checkout's is the one beside the running Python. For each
size one library of real FLAC/OGG/MP3 files with messy tags is generated;
with ``--albums`` it is imported as albums (``beet import -A -C``, 11 tracks an
album, beets' default path format, which uses ``%aunique{}``): the album rows
the operations normalize and the path formats read. Then, for each
repetition and operation (``rename-unmarked``, ``process-unmarked``), each
build runs on a fresh copy, alternating which goes first, timed whole (GNU
time: CPU and peak RSS); the first repetition also counts fsync + fdatasync
calls under strace, in a run of its own. Reported: medians, and new / old.

``--grow SECONDS`` makes a library whose every tag write must grow the tag:
SECONDS of noise per file (FLAC, OGG, MP3, as tests/fulltracks.py makes them),
saved with no padding, titles ``Track N ft Guest N`` that ``feat_format:
featuring`` lengthens; meant for ``--ops normalize-unmarked``. The table then
also gives what each build wrote to storage (block output, GNU time's %O).

    python bench/paired_bench.py --beet /path/to/old/venv/bin/beet --sizes 1000 --reps 5 \\
        --grow 5 --ops normalize-unmarked
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, Measured, run_measured, write_config

from beetsplug.unmarked.demo import make_track

EXTS = ["mp3", "flac", "ogg"]
OPS = ["rename-unmarked", "process-unmarked", "normalize-unmarked"]
TRACKS_PER_ALBUM = 11


def generate(root: Path, size: int, albums: bool) -> None:
    """The library: files under the music directory's ``old/``, every title messy."""
    music = root / "music"
    extra = {"import": {"write": False, "autotag": False, "quiet": True}}
    if albums:
        extra["paths"] = {"default": "$albumartist/$album%aunique{}/$track $title"}  # beets' default
    write_config(root, music, extra)
    where = music / "old"  # inside the music directory: the library stores relative paths, so copies are whole
    for n in range(size):
        album = n // TRACKS_PER_ALBUM
        tags = {"title": f"  Track   {n} ft. Guest", "artist": f"Artist  {album % 40}",
                "album": f"Album  {album}", "tracknumber": str(n % TRACKS_PER_ALBUM + 1)}
        make_track(where / f"{album:04d}" / f"{n:05d}.{EXTS[n % 3]}", tags)
    singletons = [] if albums else ["-s"]
    subprocess.run([BEET, "import", "-A", "-C", "-q", *singletons, str(where)], check=True, capture_output=True,
                   env={**os.environ, "BEETSDIR": str(root), "HOME": str(root)})


def generate_growing(root: Path, size: int, seconds: int) -> None:
    """The library for ``--grow``: full-length noise with no padding, titles that grow."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fulltracks import full_track

    music = root / "music"
    write_config(root, music, {"import": {"write": False, "autotag": False, "quiet": True},
                               "unmarked": {"feat_format": "featuring"}})
    where = music / "old"
    for n in range(size):
        full_track(where / f"{n // 100:03d}" / f"{n:05d}.{EXTS[n % 3]}",
                   {"title": f"Track {n} ft Guest {n}", "artist": "Main Artist", "album": "Noise"},
                   padding=0, seconds=seconds)
    subprocess.run([BEET, "import", "-A", "-C", "-q", "-s", str(where)], check=True, capture_output=True,
                   env={**os.environ, "BEETSDIR": str(root), "HOME": str(root)})


def fresh(template: Path, scratch: Path) -> Path:
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(template, scratch, symlinks=True)
    config = scratch / "config.yaml"
    config.write_text(config.read_text().replace(str(template), str(scratch)))
    return scratch


def run(beet: str, op: str, template: Path, scratch: Path, count_fsync: bool) -> Measured:
    """One whole command on a fresh copy; a run that did not do every item is an error, not a number."""
    root = fresh(template, scratch)
    measured = run_measured([beet, op], root, count_fsync=count_fsync)
    if " 0 failed, 0 skipped" not in measured.output or "(completed)" not in measured.output:
        raise RuntimeError(f"{beet} {op} did not complete every item:\n{measured.output[-2000:]}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beet", required=True, help="the other build's beet (the 'old' column)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--reps", type=int, default=5, help="0: only count fsyncs and bytes written")
    parser.add_argument("--albums", action="store_true", help="a library imported as albums")
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS[:2])
    parser.add_argument("--grow", type=int, metavar="SECONDS", help="files whose tags must grow (see above)")
    args = parser.parse_args()
    builds = {"old": args.beet, "new": BEET}
    with tempfile.TemporaryDirectory(prefix="paired-") as tmp:
        for size in args.sizes:
            template = Path(tmp) / f"lib{size}"
            if args.grow:
                generate_growing(template, size, args.grow)
            else:
                generate(template, size, args.albums)
            for op in args.ops:
                times: dict[str, list[Measured]] = {"old": [], "new": []}
                counted = {name: run(beet, op, template, Path(tmp) / "s", True) for name, beet in builds.items()}
                fsyncs = {name: m.fsyncs for name, m in counted.items()}
                if args.reps == 0:  # counts only (a busy machine: no timings)
                    print(f"| {op} | {size} | fsync+fdatasync {fsyncs['old']} / {fsyncs['new']} | written "
                          f"{counted['old'].written_mib or 0:.0f} / {counted['new'].written_mib or 0:.0f} MiB |",
                          flush=True)
                    continue
                for rep in range(args.reps):
                    order = ["old", "new"] if rep % 2 == 0 else ["new", "old"]
                    for name in order:
                        times[name].append(run(builds[name], op, template, Path(tmp) / "s", False))
                med = {name: statistics.median(m.seconds for m in ms) for name, ms in times.items()}
                rss = {name: max(m.peak_rss_mib or 0 for m in ms) for name, ms in times.items()}
                written = {name: statistics.median(m.written_mib or 0 for m in ms) for name, ms in times.items()}
                kind = " (albums)" if args.albums else f" ({args.grow} s, tags grow)" if args.grow else ""
                print(f"| {op} | {size}{kind} | {med['old']:.2f} s | "
                      f"{med['new']:.2f} s | **{med['new'] / med['old']:.3f}** | {fsyncs['old']} / {fsyncs['new']} | "
                      f"{rss['old']:.0f} / {rss['new']:.0f} MiB | {written['old']:.0f} / {written['new']:.0f} MiB |",
                      flush=True)


if __name__ == "__main__":
    main()
