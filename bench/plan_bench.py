"""The confirmation's plan: how soon the first numbers, how long the whole plan.

On a generated library of real files (all unmarked, every title messy, so
every item is retagged and moved), served by `beet web`, the page's way of
asking (``POST /api/plan`` for a first slice of 200, then slices of 2000,
added up) is timed from the first request:

- first numbers: the answer to the first slice (what the page shows at once);
- whole plan: the last slice's answer;
- one request: the same plan asked for in one ``GET /api/plan`` (no slices);
- beside it, beets' own `beet ls -f '$path'` over the same items, as a floor:
  reading the library once, without opening any file.

    python bench/plan_bench.py --items 20000 [--ops process rename]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import BEET, start_beet_web, table  # noqa: E402
from operations_bench import generate  # noqa: E402

FIRST, SLICE = 200, 2000  # as the page asks (unmarked.js: PLAN_FIRST, PLAN_SLICE)


def sliced(base: str, op: str) -> tuple[float, float, dict]:
    """(seconds to the first answer, seconds to the last, the plan added up)."""
    began = time.perf_counter()
    offset, limit, first = 0, FIRST, None
    total = {"moves": 0, "retags": 0, "unchanged": 0, "failures": 0, "scanned": 0}
    while True:
        answer = requests.post(f"{base}/api/plan", json={"op": op, "query": "", "offset": offset, "limit": limit},
                               timeout=600).json()
        first = first if first is not None else time.perf_counter() - began
        for key in ("moves", "retags", "unchanged", "scanned"):
            total[key] += answer[key]
        total["failures"] += sum(answer["failures"].values())
        if answer["next"] is None:
            return first, time.perf_counter() - began, total
        offset, limit = answer["next"], SLICE


def whole(base: str, op: str) -> float:
    began = time.perf_counter()
    answer = requests.get(f"{base}/api/plan", params={"op": op}, timeout=600).json()
    assert answer["complete"], answer
    return time.perf_counter() - began


def beet_ls(root: Path) -> float:
    began = time.perf_counter()
    subprocess.run([BEET, "ls", "-f", "$path"], env={"BEETSDIR": str(root), "PATH": "/usr/bin:/bin"},
                   stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--ops", nargs="+", default=["process", "rename"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="unmarked-planbench-"))
    try:
        print(f"generating {args.items} files ...", file=sys.stderr)
        generate(root, args.items)
        floor = min(beet_ls(root) for _ in range(args.rounds))
        server, base, _ = start_beet_web(root)
        try:
            requests.post(f"{base}/api/plan", json={"op": "process", "limit": 10}, timeout=60)  # warm up
            measured = {op: ([sliced(base, op) for _ in range(args.rounds)],
                             [whole(base, op) for _ in range(args.rounds)]) for op in args.ops}
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows: list[list[object]] = [["items", args.items]]
    for op, (runs, wholes) in measured.items():
        first, last, plan = min(runs, key=lambda run: run[1])
        assert plan["scanned"] == args.items, plan
        rows += [
            [f"{op}: plan", f"{plan['moves']} moves, {plan['retags']} retags, {plan['failures']} failures"],
            [f"{op}: first numbers (slice of 200), s", f"{min(r[0] for r in runs):.2f}"],
            [f"{op}: whole plan, sliced as the page asks, s", f"{last:.2f}"],
            [f"{op}: whole plan, one request, s", f"{min(wholes):.2f}"],
            [f"{op}: per item, ms", f"{1000 * min(wholes) / args.items:.3f}"],
            [f"{op}: whole plan / beet ls", f"{min(wholes) / floor:.1f}"],
        ]
    rows.append(["beet ls -f '$path' (floor: no file opened), s", f"{floor:.2f}"])
    print(table(["measure", f"best of {args.rounds}"], rows))


if __name__ == "__main__":
    main()
