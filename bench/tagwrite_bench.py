"""What the untearable tag write costs, on full-length files.

The same library of full-length tracks (40 s of noise: FLAC ~6.5 MB, OGG
Vorbis ~2.6 MB, MP3 ~1.6 MB), saved once with no padding and once with
mutagen's default padding, gets the same tag change (a title that grows)
written two ways, alternating, each round on fresh copies of the files:

* in place only: beets' own ``Item.write`` (mutagen moves the audio when the
  tag does not fit: the write a kill can tear);
* safe: ``files.write_tags`` (in place when it fits, else a flushed backup
  copy, then in place, flushed, the backup removed).

Only the write calls are timed; ratios are safe / in place.

    python bench/tagwrite_bench.py [--per-format 10] [--rounds 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from beets.library import Item
from common import table

from beetsplug.unmarked.files import write_tags
from tests.fulltracks import EXTS, full_track
from tests.libenv import LibraryEnv

PADDINGS = {"none": 0, "default": None}


def reflink_works(directory: Path) -> str:
    a, b = directory / ".probe-a", directory / ".probe-b"
    a.write_bytes(b"x" * 4096)
    try:
        with open(a, "rb") as src, open(b, "wb") as dst:
            fcntl.ioctl(dst.fileno(), 0x40049409, src.fileno())
        return "yes"
    except OSError as exc:
        return f"no ({errno.errorcode.get(exc.errno, exc.errno)})"
    finally:
        a.unlink()
        b.unlink(missing_ok=True)


def filesystem(directory: Path) -> str:
    found = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(directory)], capture_output=True, text=True)
    return (found.stdout.split() or ["?"])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-format", type=int, default=10, help="files per format and padding")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where the music goes (default: a temp dir)")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="tagwrite-bench-", dir=args.dir))
    pristine, work = base / "pristine", base / "work"
    try:
        with LibraryEnv() as env:
            items: list[tuple[Item, Path, str, str]] = []
            for padding, pad in PADDINGS.items():
                for ext in EXTS:
                    for n in range(args.per_format):
                        name = f"{padding}/{ext}-{n}.{ext}"
                        tags = {"title": f"Track {n} ft Guest", "artist": "Main Artist"}
                        full_track(pristine / name, tags, padding=pad)
                        (work / name).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(pristine / name, work / name)
                        item = Item.from_path(str(work / name))
                        env.lib.add(item)
                        item.title = f"Track {n} featuring Guest, live at the Royal Albert Hall"
                        items.append((item, work / name, ext, padding))

            ways = {"in place only": lambda item: item.write(), "safe": write_tags}
            for way in ways.values():  # warm up: imports, the hooks' one-time install
                way(items[0][0])
            times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
            routes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
            for round_ in range(args.rounds):
                order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
                for way in order:
                    for _, path, _, padding in items:  # fresh files, not timed
                        shutil.copyfile(pristine / padding / path.name, path)
                    for item, _, ext, padding in items:
                        start = time.perf_counter()
                        route = ways[way](item)
                        times[(way, ext, padding)].append(time.perf_counter() - start)
                        if way == "safe":
                            routes[(ext, padding)][route.route] += 1

            rows, totals = [], {way: 0.0 for way in ways}
            for padding in PADDINGS:
                for ext in EXTS:
                    size = statistics.mean((pristine / padding / f"{ext}-{n}.{ext}").stat().st_size
                                           for n in range(args.per_format))
                    plain = statistics.median(times[("in place only", ext, padding)]) * 1000
                    safe = statistics.median(times[("safe", ext, padding)]) * 1000
                    for way in ways:
                        totals[way] += sum(times[(way, ext, padding)])
                    route = ", ".join(f"{k} {v}" for k, v in sorted(routes[(ext, padding)].items()))
                    rows.append([ext, padding, f"{size / 1e6:.1f}", f"{plain:.2f}", f"{safe:.2f}",
                                 f"{safe / plain:.2f}x", route])
            rows.append(["all", "both", "", f"{totals['in place only'] * 1000 / args.rounds:.0f} (total)",
                         f"{totals['safe'] * 1000 / args.rounds:.0f} (total)",
                         f"{totals['safe'] / totals['in place only']:.2f}x", ""])

            print("# Tag writes on full-length files: in place only vs safe\n")
            print(f"    python bench/tagwrite_bench.py --per-format {args.per_format} --rounds {args.rounds}"
                  + (f" --dir {args.dir}" if args.dir else ""))
            print(f"\n{len(items)} files ({args.per_format} per format and padding), {args.rounds} rounds; "
                  f"filesystem {filesystem(base)}, reflink {reflink_works(base)}; "
                  "median ms per write, ratio safe / in place only.\n")
            print(table(["format", "padding", "MB", "in place only (ms)", "safe (ms)", "ratio", "safe route"], rows))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
