"""The floors: the least work an operation needs, timed as whole commands.

Two floors, for two questions.

**The plain floor** (both operations) asks "how much of our time is work at
all?". Per item: one tag write of the changed fields with mutagen (process
only), one ``os.rename``; per batch of 200 items one fsync'd commit (beets'
SQLite settings: rollback journal, ``synchronous=FULL``) of the new paths, the
changed columns and the markers. Each new directory is made once. What to do
is worked out beforehand and not timed: the plan is the difference between
the library before and after a real run of the operation (new path, changed
columns per item), so the floor does exactly the work that run did, minus
everything that decides it (queries, templates, normalization rules, beets'
item model, plugin events, the journal, crash safety). One process, one
thread: the floor of the work, not of the hardware. It is handed the
destinations and starts no beets; no beets plugin can have either.

**The beets floor** (rename only) asks "how close are we to what any beets
plugin must pay?". A plugin runs inside a ``beet`` command, so it pays beets'
start-up, and it must take each destination from beets' own
``Item.destination()`` (path formats, ``replace``, ``asciify_paths`` and
truncation are beets'). So: the plain floor's work (its own timing, without
its interpreter start-up) + a whole ``beet version`` on the same library
(interpreter, beets' imports, configuration, plugins loaded, library opened)
+ one ``Item.destination()`` per item, timed in one process over items
already read (reading them is not counted). The destinations are computed
the cheapest way beets allows (path-format queries parsed once, plugin field
getters merged once: ``beets_compat.path_format_chooser`` and
``plugin_getters_fixed``, what our run does too); the plain per-item
``item.destination()``, which redoes both on every call, is reported beside
it. A second beets floor splits the destinations over two forked processes
(interleaved halves, nothing sent back: an ideal split for two cores).

    python bench/floor_bench.py --sizes 1000 5000 --reps 5   # ours vs both floors
    python bench/floor_bench.py --run PLAN.json --db DB      # worker: the plain floor's work
    python bench/floor_bench.py --destinations               # worker: destinations (BEETSDIR set)

The workers print one JSON line with their own timings; the caller also
times the whole command. Standalone, per repetition and size, in this
order: ``beet rename-unmarked`` on a fresh copy of the library, the plain
floor of that very run, ``beet version``, the destinations worker; then the
same for process (without the last two). Medians over the repetitions, ratios
of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

BATCH = 200
MARKERS = {"process": ("normalized", "renamed"), "rename": ("renamed",), "normalize": ("normalized",)}
# Library column -> (ID3 frame, Vorbis comment key): what the bench library's normalization changes.
TAG_KEYS = {"title": ("TIT2", "title"), "album": ("TALB", "album"), "artist": ("TPE1", "artist"),
            "albumartist": ("TPE2", "albumartist")}
TAG_COLUMNS = set(TAG_KEYS)
IGNORED_COLUMNS = {"mtime"}  # beets' write updates it; not part of the work


def make_plan(before_db: Path, after_db: Path, music: Path, op: str, out: Path) -> int:
    """Write the plan (what the run from ``before_db`` to ``after_db`` did) to ``out``;
    return the number of items in it."""

    def rows(db: Path) -> dict[int, dict[str, Any]]:
        conn = sqlite3.connect(str(db))
        conn.row_factory = sqlite3.Row
        try:
            return {row["id"]: dict(row) for row in conn.execute("SELECT * FROM items")}
        finally:
            conn.close()

    before, after = rows(before_db), rows(after_db)
    plan = []
    for item_id, old in sorted(before.items()):
        new = after[item_id]
        changed = {key: new[key] for key in old if key not in ("path", *IGNORED_COLUMNS) and old[key] != new[key]}
        unknown = set(changed) - TAG_COLUMNS
        if unknown:
            raise ValueError(f"the floor does not know how to write {sorted(unknown)}")
        plan.append({
            "id": item_id,
            "src": os.fsdecode(os.path.join(bytes(music), bytes(old["path"]))),
            "dst": os.fsdecode(os.path.join(bytes(music), bytes(new["path"]))),
            "tags": changed,
        })
    out.write_text(json.dumps({"op": op, "items": plan}))
    return len(plan)


def _write_tags(path: str, tags: dict[str, str]) -> None:
    import mutagen
    from mutagen import id3

    audio = mutagen.File(path)
    if isinstance(audio.tags, id3.ID3):
        for column, value in tags.items():
            frame = TAG_KEYS[column][0]
            audio.tags.setall(frame, [getattr(id3, frame)(encoding=3, text=[value])])
    else:
        for column, value in tags.items():
            audio.tags[TAG_KEYS[column][1]] = [value]
    audio.save()


def run(plan_path: Path, db_path: Path) -> dict[str, Any]:
    """The timed work."""
    start = time.perf_counter()
    plan = json.loads(plan_path.read_text())
    markers = MARKERS[plan["op"]]
    conn = sqlite3.connect(str(db_path), isolation_level=None)  # beets' defaults: DELETE journal, FULL sync
    made: set[str] = set()
    items = plan["items"]
    for first in range(0, len(items), BATCH):
        batch = items[first:first + BATCH]
        for entry in batch:
            if entry["tags"]:
                _write_tags(entry["src"], entry["tags"])
            if entry["dst"] != entry["src"]:
                directory = os.path.dirname(entry["dst"])
                if directory not in made:
                    os.makedirs(directory, exist_ok=True)
                    made.add(directory)
                os.rename(entry["src"], entry["dst"])
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for entry in batch:
            columns = tuple(sorted(entry["tags"]))
            values = [entry["tags"][c] for c in columns]
            by_columns.setdefault(columns, []).append((os.fsencode(entry["dst"]), *values, entry["id"]))
        for columns, rows in by_columns.items():
            sets = ", ".join(["path = ?", *(f"{c} = ?" for c in columns)])
            conn.executemany(f"UPDATE items SET {sets} WHERE id = ?", rows)
        conn.executemany("INSERT INTO item_attributes (entity_id, key, value) VALUES (?, ?, ?)",
                         [(entry["id"], marker, now) for entry in batch for marker in markers])
        conn.execute("COMMIT")
    conn.close()
    return {"items": len(items), "work_seconds": time.perf_counter() - start}


def destinations() -> dict[str, Any]:
    """The beets floor's destinations: the library of ``BEETSDIR`` opened as
    ``beet`` opens it, every item read (not timed), then one destination per
    item, timed three ways."""
    from beets import config, plugins
    from beets.library import Library

    from beetsplug.unmarked.beets_compat import music_dir, path_format_chooser, plugin_getters_fixed

    config.read()
    plugins.load_plugins()
    lib = Library(config["library"].as_path(), config["directory"].as_filename())
    with music_dir(lib):
        items = list(lib.items())
        for item in items[:20]:  # warm-up, not timed
            item.destination()

        start = time.perf_counter()
        for item in items:  # beets' own call as a plugin would make it per item
            item.destination()
        plain = time.perf_counter() - start

        with plugin_getters_fixed():
            destination = path_format_chooser(lib)
            start = time.perf_counter()
            for item in items:  # the same destinations, beets' per-call parsing done once
                destination(item)
            one = time.perf_counter() - start

            start = time.perf_counter()
            children = []
            for half in (items[0::2], items[1::2]):
                pid = os.fork()
                if pid == 0:
                    for item in half:
                        destination(item)
                    os._exit(0)
                children.append(pid)
            for pid in children:
                os.waitpid(pid, 0)
            two = time.perf_counter() - start
    lib._close()
    return {"items": len(items), "plain_seconds": plain, "one_process_seconds": one, "two_processes_seconds": two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="the plan to carry out (worker mode)")
    parser.add_argument("--db", type=Path, help="the library database (worker mode)")
    parser.add_argument("--destinations", action="store_true", help="time the destinations (worker mode)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per size")
    parser.add_argument("--ops", nargs="+", choices=["rename", "process"], default=["rename", "process"])
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.run, args.db)))
        return
    if args.destinations:
        print(json.dumps(destinations()))
        return
    standalone(args.sizes, args.reps, args.ops)


def measure_floor(template: Path, after_db: Path, work: Path, op: str, count: bool = False) -> Any:
    """Plan from ``template`` -> ``after_db``, then time the floor on a fresh copy of ``template``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import child_json, run_measured
    from operations_bench import fresh_copy

    plan = template.parent / f"plan-{op}-{template.name}.json"
    make_plan(template / "library.db", after_db, template / "music", op, plan)
    fresh_copy(template, work)
    # the plan names the template's paths: point them at the copy
    plan.write_text(plan.read_text().replace(json.dumps(str(template))[1:-1], json.dumps(str(work))[1:-1]))
    measured = run_measured([sys.executable, str(Path(__file__).resolve()), "--run", str(plan),
                             "--db", str(work / "library.db")], work, count_fsync=count)
    measured.work_seconds = child_json(measured.output)["work_seconds"]
    plan.unlink()
    return measured


def standalone(sizes: list[int], reps: int, ops: list[str]) -> None:
    import shutil
    import statistics
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import BEET, child_json, run_measured, table
    from operations_bench import fresh_copy, generate

    base = Path(tempfile.mkdtemp(prefix="unmarked-floor-"))
    plain_rows: list[list[object]] = []
    beets_rows: list[list[object]] = []
    try:
        for size in sizes:
            template, work, done = base / f"template-{size}", base / "work", base / "done"
            generate(template, size)
            got: dict[str, list[float]] = {}

            def keep(name: str, value: float) -> None:
                got.setdefault(name, []).append(value)

            for rep in range(reps):
                for op in ops:
                    fresh_copy(template, done)
                    ours = run_measured([BEET, f"{op}-unmarked"], done, count_fsync=False)  # also the plan's source
                    floor = measure_floor(template, done / "library.db", work, op)
                    keep(f"{op} ours", ours.seconds)
                    keep(f"{op} floor", floor.seconds)
                    keep(f"{op} floor work", floor.work_seconds)
                    if op == "rename":
                        fresh_copy(template, work)
                        keep("start-up", run_measured([BEET, "version"], work, count_fsync=False).seconds)
                        dest = child_json(run_measured([sys.executable, str(Path(__file__).resolve()),
                                                        "--destinations"], work, count_fsync=False).output)
                        assert dest["items"] == size, dest
                        keep("dest plain", dest["plain_seconds"])
                        keep("dest 1", dest["one_process_seconds"])
                        keep("dest 2", dest["two_processes_seconds"])
                print(f"  {size} rep {rep + 1}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in got.items()),
                      file=sys.stderr, flush=True)
            fsyncs = {}
            for op in ops:  # counted in a separate run: strace is not in the timings
                fresh_copy(template, done)
                run_measured([BEET, f"{op}-unmarked"], done, count_fsync=False)
                fsyncs[op] = measure_floor(template, done / "library.db", work, op, count=True).fsyncs
            shutil.rmtree(template, ignore_errors=True)

            med = {name: statistics.median(values) for name, values in got.items()}
            for op in ops:
                plain_rows.append([size, op, reps, f"{med[f'{op} ours']:.2f}", f"{med[f'{op} floor']:.2f}",
                                   f"{med[f'{op} floor work']:.2f}", fsyncs[op],
                                   f"**{med[f'{op} ours'] / med[f'{op} floor']:.2f}**"])
            if "rename" in ops:
                one = med["start-up"] + med["dest 1"] + med["rename floor work"]
                two = med["start-up"] + med["dest 2"] + med["rename floor work"]
                beets_rows.append([size, reps, f"{med['rename ours']:.2f}", f"{med['rename floor']:.2f}",
                                   f"{med['start-up']:.2f}", f"{med['dest plain']:.2f}", f"{med['dest 1']:.2f}",
                                   f"{med['dest 2']:.2f}", f"{one:.2f}", f"{two:.2f}",
                                   f"**{med['rename ours'] / med['rename floor']:.2f}**",
                                   f"**{med['rename ours'] / one:.2f}**", f"**{med['rename ours'] / two:.2f}**"])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(["items", "operation", "runs", "ours, whole command (s)", "plain floor, whole command (s)",
                 "plain floor, work only (s)", "floor fsyncs", "ours ÷ plain floor"], plain_rows))
    if beets_rows:
        print()
        print(table(["items", "runs", "`beet rename-unmarked` (s)", "plain floor (s)", "`beet version` (s)",
                     "`item.destination()` per item, 1 process (s)", "destinations, parsing once, 1 process (s)",
                     "same, 2 processes (s)", "beets floor, 1 process (s)", "beets floor, 2 processes (s)",
                     "ours ÷ plain floor", "ours ÷ beets floor (1 process)", "ours ÷ beets floor (2 processes)"],
                    beets_rows))


if __name__ == "__main__":
    main()
