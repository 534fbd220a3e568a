"""The operations against beets' own commands, on the same generated library.

For each size, one library of real FLAC/OGG/MP3 files with messy tags is
generated once and copied fresh for every command, so each starts from the
same state:

- `beet rename-unmarked`   vs `beet move`                          (move every file)
- `beet process-unmarked`  vs `beet modify -y -w -M` + `beet move` (write the tags
  of every file, then move every file: the same work in two beets commands)
- and, for reference, `beet modify -y -w -m`, which does both in one command
  inside a single transaction held for the whole run (other readers wait).

Reported: wall time of the whole command(s), fsync+fdatasync calls (strace),
and the ratios.

    python bench/operations_bench.py --sizes 600 5000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, Measured, new_library, run_measured, table, write_config  # noqa: E402

from beetsplug.unmarked.demo import make_track  # noqa: E402

EXTS = ["mp3", "flac", "ogg"]


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


def beet(work: Path, *args: str) -> Measured:
    return run_measured([BEET, *args], work)


def measure(size: int, base: Path) -> list[list[object]]:
    template = base / f"template-{size}"
    generate(template, size)
    work = base / "work"
    results: dict[str, Measured] = {}

    results["beet move"] = beet(fresh_copy(template, work), "move")
    results["rename-unmarked"] = beet(fresh_copy(template, work), "rename-unmarked")

    fresh_copy(template, work)
    modify = beet(work, "modify", "-y", "-w", "-M", "comments=tidied")
    move = beet(work, "move")
    results["beet modify -M + beet move"] = Measured(modify.seconds + move.seconds, modify.fsyncs + move.fsyncs)
    results["beet modify -m"] = beet(fresh_copy(template, work), "modify", "-y", "-w", "-m", "comments=tidied")
    results["process-unmarked"] = beet(fresh_copy(template, work), "process-unmarked")

    for name, m in results.items():
        print(f"  {size} {name}: {m.seconds:.2f} s, {m.fsyncs} fsyncs", file=sys.stderr)

    def row(ours: str, theirs: str) -> list[list[object]]:
        a, b = results[ours], results[theirs]
        return [
            [size, f"`{theirs}`", f"{b.seconds:.2f}", b.fsyncs, "", ""],
            [size, f"`beet {ours}`", f"{a.seconds:.2f}", a.fsyncs,
             f"{a.seconds / b.seconds:.2f}", f"1/{b.fsyncs / max(a.fsyncs, 1):.0f}"],
        ]

    return (row("rename-unmarked", "beet move") + row("process-unmarked", "beet modify -M + beet move")
            + row("process-unmarked", "beet modify -m")[:1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[600, 5000])
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-opbench-"))
    rows: list[list[object]] = []
    try:
        for size in args.sizes:
            rows += measure(size, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(["items", "command", "seconds", "fsyncs", "time ratio (ours/beets)", "fsyncs ratio"], rows))


if __name__ == "__main__":
    main()
