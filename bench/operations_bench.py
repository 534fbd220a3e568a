"""The operations against beets' own commands and against the floor, paired.

For each size, one library of real FLAC/OGG/MP3 files with messy tags is
generated once and copied fresh for every command, so each starts from the
same state. Per repetition, in this order:

- `beet move`                           then `beet rename-unmarked`, then its floor
- `beet modify -y -w -M` + `beet move`  then `beet process-unmarked`, then its floor
  (write the tags of every file, then move every file: the same work in two
  beets commands)
- and, for reference, `beet modify -y -w -m` (both in one command, inside a
  single transaction held for the whole run: other readers wait).

The floor (bench/floor_bench.py) does exactly what that repetition's run of
ours did - the same tag changes with mutagen, the same renames, one fsync'd
commit per 200 items - and nothing else. Every command is timed whole
(interpreter and beets start-up included) with GNU time (user + sys CPU,
peak RSS of the largest process); on the first repetition each runs once
more, untimed, under strace to count its fsync + fdatasync calls (strace
slows beets' fsync-heavy commands by ~15 % and a forking command more).
Reported: medians over the repetitions, and ratios of medians.

    python bench/operations_bench.py --sizes 1000 5000 20000 --reps 3 2 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, Measured, new_library, run_measured, table, write_config
from floor_bench import measure_floor

from beetsplug.unmarked.demo import make_track

EXTS = ["mp3", "flac", "ogg"]
REFERENCE_UP_TO = 5000  # `beet modify -m` (a reference, not a target) only at sizes up to this


def generate(root: Path, size: int) -> None:
    """A library whose files sit in 'old/' inside the music dir, every title messy."""
    music = root / "music"
    db_path = write_config(root, music)
    lib = new_library(db_path, music)
    from beets.library import Item

    with lib.transaction():
        for n in range(size):
            tags = {"title": f"  Track   {n} ft. Guest", "artist": f"Artist {n % 40}",
                    "album": f"Album  {n // 12}", "tracknumber": str(n % 12 + 1)}
            path = make_track(music / "old" / f"{n // 100:03d}" / f"{n:05d}.{EXTS[n % 3]}", tags)
            lib.add(Item.from_path(str(path)))
    lib._close()


def fresh_copy(template: Path, work: Path) -> Path:
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(template, work, symlinks=True)
    # the config names absolute paths: point it at the copy
    config = (work / "config.yaml").read_text().replace(str(template), str(work))
    (work / "config.yaml").write_text(config)
    return work


def beet(work: Path, *args: str, count: bool = False) -> Measured:
    return run_measured([BEET, *args], work, count_fsync=count)


def store_mib(work: Path) -> float:
    """The job store's files (database, WAL, shared memory) after the run."""
    base = work / "library.db-unmarked.db"
    return sum(os.path.getsize(f"{base}{s}") for s in ("", "-wal", "-shm") if os.path.exists(f"{base}{s}")) / 2**20


def counted(template: Path, work: Path, *commands: tuple[str, ...]) -> int:
    """The fsyncs of the commands run one after the other on a fresh copy (under strace, not timed)."""
    fresh_copy(template, work)
    return sum(beet(work, *args, count=True).fsyncs for args in commands)


def one_rep(template: Path, base: Path, size: int, rep: int) -> dict[str, Measured]:
    """Every command once, timed without strace (it slows a forking command
    down, and beets' thousands of fsyncs too); on the first repetition each is
    run again under strace to count its fsyncs."""
    work, kept = base / "work", base / "after.db"
    got: dict[str, Measured] = {}
    got["beet move"] = beet(fresh_copy(template, work), "move")
    got["rename-unmarked"] = beet(fresh_copy(template, work), "rename-unmarked")
    got["rename-unmarked"].store_mib = store_mib(work)
    shutil.copyfile(work / "library.db", kept)
    got["floor (rename)"] = measure_floor(template, kept, work, "rename")

    fresh_copy(template, work)
    got["beet modify -M + beet move"] = beet(work, "modify", "-y", "-w", "-M", "comments=tidied") + beet(work, "move")
    got["process-unmarked"] = beet(fresh_copy(template, work), "process-unmarked")
    got["process-unmarked"].store_mib = store_mib(work)
    shutil.copyfile(work / "library.db", kept)
    got["floor (process)"] = measure_floor(template, kept, work, "process")
    if rep == 0 and size <= REFERENCE_UP_TO:
        got["beet modify -m"] = beet(fresh_copy(template, work), "modify", "-y", "-w", "-m", "comments=tidied")
    if rep == 0:
        commands: dict[str, list[tuple[str, ...]]] = {
            "beet move": [("move",)], "rename-unmarked": [("rename-unmarked",)],
            "beet modify -M + beet move": [("modify", "-y", "-w", "-M", "comments=tidied"), ("move",)],
            "process-unmarked": [("process-unmarked",)],
            "beet modify -m": [("modify", "-y", "-w", "-m", "comments=tidied")],
        }
        for name, args in commands.items():
            if name in got:
                got[name].fsyncs = counted(template, work, *args)
        for op in ("rename", "process"):  # the floor's plan is made from its own fresh run of ours
            run_measured([BEET, f"{op}-unmarked"], fresh_copy(template, work), count_fsync=False)
            shutil.copyfile(work / "library.db", kept)
            got[f"floor ({op})"].fsyncs = measure_floor(template, kept, work, op, count=True).fsyncs
    for name, m in got.items():
        print(f"  {size} rep {rep + 1} {name}: {m.seconds:.2f} s, cpu {m.cpu_use or 0:.2f}, "
              f"rss {m.peak_rss_mib or 0:.0f} MiB, {m.fsyncs} fsyncs", file=sys.stderr, flush=True)
    return got


def median(runs: list[Measured], attr: str) -> float:
    values = [v for m in runs if (v := getattr(m, attr, None)) is not None and not (attr == "fsyncs" and v < 0)]
    return statistics.median(values) if values else float("nan")


def measure(size: int, reps: int, base: Path) -> list[list[object]]:
    template = base / f"template-{size}"
    generate(template, size)
    runs: dict[str, list[Measured]] = {}
    for rep in range(reps):
        for name, m in one_rep(template, base, size, rep).items():
            runs.setdefault(name, []).append(m)
    shutil.rmtree(template, ignore_errors=True)

    def seconds(name: str) -> float:
        return median(runs[name], "seconds")

    def row(name: str, beets: str | None = None, floor: str | None = None) -> list[object]:
        ms = runs[name]
        store = median(ms, "store_mib")
        return [
            size, f"`{name if name.startswith(('beet ', 'floor')) else 'beet ' + name}`", len(ms),
            f"{seconds(name):.2f}", f"{median(ms, 'cpu_use'):.2f}", f"{median(ms, 'peak_rss_mib'):.0f}",
            f"{median(ms, 'fsyncs'):.0f}",
            f"**{seconds(name) / seconds(beets):.2f}**" if beets else "",
            f"1/{median(runs[beets], 'fsyncs') / max(median(ms, 'fsyncs'), 1):.0f}" if beets else "",
            f"**{seconds(name) / seconds(floor):.2f}**" if floor else "",
            f"{store:.1f}" if store == store else "",
        ]

    rows = [row("beet move"), row("rename-unmarked", "beet move", "floor (rename)"), row("floor (rename)"),
            row("beet modify -M + beet move"),
            row("process-unmarked", "beet modify -M + beet move", "floor (process)"), row("floor (process)")]
    if "beet modify -m" in runs:
        rows.append(row("beet modify -m"))
    return rows


HEADERS = ["items", "command", "runs", "seconds (median)", "CPU use", "peak RSS MiB", "fsyncs",
           "time ÷ beets", "fsyncs vs beets", "time ÷ floor", "job store MiB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--reps", type=int, nargs="+", default=[3, 2, 1],
                        help="repetitions per size (the last one repeats for further sizes)")
    parser.add_argument("--dir", type=Path, default=None, help="where the libraries go (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-opbench-", dir=args.dir))
    rows: list[list[object]] = []
    try:
        for n, size in enumerate(args.sizes):
            rows += measure(size, args.reps[min(n, len(args.reps) - 1)], base)
            print(table(HEADERS, rows), file=sys.stderr, flush=True)  # so far, in case a later size fails
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(HEADERS, rows))


if __name__ == "__main__":
    main()
