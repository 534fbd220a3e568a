"""`beet update` run beside a job that moves files: how many library entries it deletes.

    python bench/update_beside.py --size 2000 --reps 5 [--beet /other/build/bin/beet]

A cron job running `beet update` while files are being moved sees, for an
item moved after it read the library, a path that no longer exists, and
deletes the entry. This measures that side by side: on fresh copies of one
generated library (real files, every path changing: the path format is
switched before the run), each mover runs while `beet update` runs again
and again beside it until the mover ends. Movers: `beet rename-unmarked`
(this build, and ``--beet``'s if given) and beets' own `beet move`.
Reported per mover: entries deleted per run (each run's count), and how many
`beet update` runs overlapped it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET
from paired_bench import fresh, generate


def items(root: Path) -> int:
    with sqlite3.connect(root / "library.db") as db:
        return int(db.execute("SELECT count(*) FROM items").fetchone()[0])


def trial(beet: str, mover: list[str], template: Path, scratch: Path) -> tuple[int, int]:
    """One mover on a fresh copy with `beet update` beside it: (entries deleted, updates run)."""
    root = fresh(template, scratch)
    config = root / "config.yaml"
    config.write_text(config.read_text() + "\npaths:\n  default: moved/$artist/$title\n  singleton: moved/$artist/$title\n")
    env = {**os.environ, "BEETSDIR": str(root), "HOME": str(root)}
    before = items(root)
    proc = subprocess.Popen([beet, *mover], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    updates = 0
    while proc.poll() is None:
        subprocess.run([BEET, "update"], env=env, capture_output=True, check=False)
        updates += 1
    return before - items(root), updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--beet", help="another build's beet, run as a third mover")
    args = parser.parse_args()
    movers = {"beet rename-unmarked": (BEET, ["rename-unmarked"]), "beet move (beets)": (BEET, ["move"])}
    if args.beet:
        movers["beet rename-unmarked (other build)"] = (args.beet, ["rename-unmarked"])
    with tempfile.TemporaryDirectory(prefix="update-beside-") as tmp:
        template = Path(tmp) / "lib"
        generate(template, args.size, albums=False)
        found: dict[str, list[tuple[int, int]]] = {name: [] for name in movers}
        for rep in range(args.reps):
            names = list(movers) if rep % 2 == 0 else list(reversed(movers))
            for name in names:
                beet, mover = movers[name]
                found[name].append(trial(beet, mover, template, Path(tmp) / "s"))
        for name, runs in found.items():
            deleted = [d for d, _ in runs]
            print(f"| {name} | {args.size} | {sum(deleted)} ({', '.join(map(str, deleted))}) | "
                  f"{sum(u for _, u in runs)} |", flush=True)


if __name__ == "__main__":
    main()
