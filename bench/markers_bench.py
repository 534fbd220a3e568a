"""Markers and the `unmarked:` query against what beets offers without the plugin.

(a) marking every item: one batch write (`set_markers`, one transaction) vs
    beets' `item.store()` per item -- time and fsync/fdatasync count;
(b) finding unmarked items: `unmarked:true` (SQL) vs the equivalent beets
    flexible-field query `renamed::^$` (Python-side), 1% of items unmarked.

    python bench/markers_bench.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bulk_add_items, child_json, new_library, ratio, run_measured, table, write_config  # noqa: E402


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
    import sqlite3

    with sqlite3.connect(template) as conn:
        conn.execute(
            "INSERT INTO item_attributes (entity_id, key, value) SELECT id, 'normalized', 1 FROM items"
        )
        conn.execute(
            "INSERT INTO item_attributes (entity_id, key, value) SELECT id, 'renamed', 1 FROM items WHERE id % 100 != 0"
        )
    query = child_json(run_measured(me + ["query"], beetsdir, count_fsync=False).output)

    (batch_s, batch_f), (item_s, item_f) = runs["batch"], runs["per-item"]
    plugin_q, beets_q = query["plugin"], query["beets"]
    return [
        [size, "(a) mark all: one write", f"{batch_s:.3f}", batch_f, "", ""],
        [size, "(a) mark all: store() per item", f"{item_s:.3f}", item_f, ratio(item_s, batch_s), ratio(item_f, max(batch_f, 1))],
        [size, f"(b) `unmarked:true` ({plugin_q['count']} found)", f"{plugin_q['seconds']:.3f}", "", "", ""],
        [size, f"(b) `renamed::^$` ({beets_q['count']} found)", f"{beets_q['seconds']:.3f}", "", ratio(beets_q["seconds"], plugin_q["seconds"]), ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
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
            rows += measure(size, work)
            print(f"... {size} items done", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(["items", "what", "seconds", "fsyncs", "slower by", "fsyncs ratio"], rows))


if __name__ == "__main__":
    main()
