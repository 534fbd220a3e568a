"""Markers and the `unmarked:` query against what beets offers without the plugin.

(a) marking every item: one batch write (`set_markers`, one transaction) vs
    beets' `item.store()` per item -- time and fsync/fdatasync count;
(b) finding unmarked items: `unmarked:true` (SQL) vs the equivalent beets
    flexible-field query `renamed::^$` (Python-side), 1% of items unmarked,
    timed in one process (best of 3 ``lib.items(query)``, no start-up).

    python bench/markers_bench.py --sizes 10000 100000

With ``--whole-commands``, (b) only, as a user sees it: whole `beet ls`
commands (interpreter, beets and plugin start-up, printing included) on the
same library, 1% of the items lacking `renamed`. Per repetition every query
runs once, the order rotating from one repetition to the next so that no
query always runs first; medians, and the ratio of medians. Before timing,
each query is run with ``-f '$id'`` and the queries must list the same ids;
each timed run must print that many lines.

    python bench/markers_bench.py --whole-commands --sizes 100000 --reps 7
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, bulk_add_items, child_json, new_library, ratio, run_measured, table, write_config  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """Runs in a subprocess (under strace): one way of marking, or the queries."""
    import beets
    from beets import plugins

    lib = new_library(Path(args.lib), Path(args.music))
    beets.config["plugins"] = ["unmarked"]
    plugins.load_plugins()  # registers the marker types and the query
    from beetsplug.unmarked.markers import set_markers

    if args.child == "batch":
        with lib.transaction() as tx:
            ids = [row[0] for row in tx.query("SELECT id FROM items")]
        start = time.perf_counter()
        set_markers(lib, ids, ("normalized", "renamed"))
        print(json.dumps({"seconds": time.perf_counter() - start}))
    elif args.child == "per-item":
        items = list(lib.items())
        start = time.perf_counter()
        now = time.time()
        for item in items:  # what a plugin without batching does
            item["normalized"] = now
            item["renamed"] = now
            item.store()
        print(json.dumps({"seconds": time.perf_counter() - start}))
    elif args.child == "query":
        result = {}
        for name, query in (("plugin", "unmarked:true"), ("beets", "renamed::^$")):
            best, found = float("inf"), None
            for _ in range(3):
                start = time.perf_counter()
                found = sorted(item.id for item in lib.items(query))
                best = min(best, time.perf_counter() - start)
            result[name] = {"seconds": best, "ids": found}
        assert result["plugin"]["ids"] == result["beets"]["ids"], "queries disagree"
        print(json.dumps({k: {"seconds": v["seconds"], "count": len(v["ids"])} for k, v in result.items()}))


def measure(size: int, work: Path) -> list[list[object]]:
    beetsdir = work / f"lib{size}"
    music = beetsdir / "music"
    template = write_config(beetsdir, music)
    bulk_add_items(template, music, size)
    pristine = beetsdir / "pristine.db"
    shutil.copyfile(template, pristine)
    me = [sys.executable, __file__, "--lib", str(template), "--music", str(music), "--child"]

    runs = {}
    for mode in ("batch", "per-item"):
        shutil.copyfile(pristine, template)
        measured = run_measured(me + [mode], beetsdir)
        runs[mode] = (child_json(measured.output)["seconds"], measured.fsyncs)

    # (b): 99% fully marked, 1% lacking `renamed` only.
    shutil.copyfile(pristine, template)
    mark_all_but_one_percent(template)
    query = child_json(run_measured(me + ["query"], beetsdir, count_fsync=False).output)

    (batch_s, batch_f), (item_s, item_f) = runs["batch"], runs["per-item"]
    plugin_q, beets_q = query["plugin"], query["beets"]
    return [
        [size, "(a) mark all: one write", f"{batch_s:.3f}", batch_f, "", ""],
        [size, "(a) mark all: store() per item", f"{item_s:.3f}", item_f, ratio(item_s, batch_s), ratio(item_f, max(batch_f, 1))],
        [size, f"(b) `unmarked:true` ({plugin_q['count']} found)", f"{plugin_q['seconds']:.3f}", "", "", ""],
        [size, f"(b) `renamed::^$` ({beets_q['count']} found)", f"{beets_q['seconds']:.3f}", "", ratio(beets_q["seconds"], plugin_q["seconds"]), ""],
    ]


def mark_all_but_one_percent(db: Path) -> None:
    """Both markers on every item, except `renamed` on every hundredth."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO item_attributes (entity_id, key, value) SELECT id, 'normalized', 1 FROM items"
        )
        conn.execute(
            "INSERT INTO item_attributes (entity_id, key, value) SELECT id, 'renamed', 1 FROM items WHERE id % 100 != 0"
        )


# (label, beet arguments); the first is what the others are compared with
WHOLE_COMMANDS = [
    ("`beet ls unmarked:true`", ["ls", "unmarked:true"]),
    ("`beet ls unmarked:rename`", ["ls", "unmarked:rename"]),
    ("`beet ls renamed::^$`", ["ls", "renamed::^$"]),
    ("`beet version` (start-up alone)", ["version"]),
]


def measure_whole_commands(size: int, reps: int, work: Path) -> list[list[object]]:
    beetsdir = work / f"lib{size}"
    music = beetsdir / "music"
    db = write_config(beetsdir, music)
    bulk_add_items(db, music, size)
    mark_all_but_one_percent(db)
    env = {**os.environ, "BEETSDIR": str(beetsdir), "HOME": str(beetsdir)}

    def ids(args: list[str]) -> list[int]:
        out = subprocess.run([BEET, args[0], "-f", "$id", *args[1:]], env=env, check=True,
                             capture_output=True, text=True).stdout
        return sorted(int(line) for line in out.split())

    queries = [args for _, args in WHOLE_COMMANDS if args[0] == "ls"]
    expected = ids(queries[0])
    for args in queries[1:]:
        assert ids(args) == expected, f"`beet {' '.join(args)}` lists other items than `beet {' '.join(queries[0])}`"

    times: dict[str, list[float]] = {label: [] for label, _ in WHOLE_COMMANDS}
    for rep in range(reps):
        order = WHOLE_COMMANDS[rep % len(WHOLE_COMMANDS):] + WHOLE_COMMANDS[:rep % len(WHOLE_COMMANDS)]
        for label, args in order:
            measured = run_measured([BEET, *args], beetsdir, count_fsync=False)
            if args[0] == "ls":
                lines = len(measured.output.splitlines())
                assert lines == len(expected), f"{label} printed {lines} lines, expected {len(expected)}"
            times[label].append(measured.seconds)
        print(f"  {size} rep {rep + 1}: " + ", ".join(f"{label} {t[-1]:.2f} s" for label, t in times.items()),
              file=sys.stderr, flush=True)
    base = statistics.median(times[WHOLE_COMMANDS[0][0]])
    rows = []
    for label, args in WHOLE_COMMANDS:
        t = times[label]
        rows.append([
            size, label, len(expected) if args[0] == "ls" else "", len(t), f"{statistics.median(t):.3f}",
            f"{min(t):.3f} to {max(t):.3f}", f"{statistics.median(t) / base:.1f}x",
        ])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--whole-commands", action="store_true",
                        help="(b) only, as whole `beet ls` commands, repeated and interleaved")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of each command (--whole-commands)")
    parser.add_argument("--child", choices=["batch", "per-item", "query"])
    parser.add_argument("--lib")
    parser.add_argument("--music")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    work = Path(tempfile.mkdtemp(prefix="unmarked-bench-"))
    rows = []
    try:
        for size in args.sizes:
            if args.whole_commands:
                rows += measure_whole_commands(size, args.reps, work)
            else:
                rows += measure(size, work)
            print(f"... {size} items done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.whole_commands:
        print(table(["items", "command", "items listed", "runs", "seconds (median)", "min to max",
                     "÷ `unmarked:true`"], rows))
        return
    print(table(["items", "what", "seconds", "fsyncs", "slower by", "fsyncs ratio"], rows))


if __name__ == "__main__":
    main()
