"""The floor: the least work an operation needs, timed as a whole command.

Per item: one tag write of the changed fields with mutagen (process only),
one ``os.rename``; per batch of 200 items one fsync'd commit (beets' SQLite
settings: rollback journal, ``synchronous=FULL``) of the new paths, the
changed columns and the markers. Each new directory is made once. What to do
is worked out beforehand and not timed: the plan is the difference between
the library before and after a real run of the operation (new path, changed
columns per item), so the floor does exactly the work that run did, minus
everything that decides it (queries, templates, normalization rules, beets'
item model, plugin events, the journal, crash safety). One process, one
thread: the floor of the work, not of the hardware.

    python bench/floor_bench.py --sizes 1000 5000        # standalone
    python bench/floor_bench.py --run PLAN.json --db DB  # the timed worker

The worker prints one JSON line: its own time for the work (without
interpreter start-up and imports) and the item count; the caller also times
the whole command.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="the plan to carry out (worker mode)")
    parser.add_argument("--db", type=Path, help="the library database (worker mode)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run(args.run, args.db)))
        return
    standalone(args.sizes)


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


def standalone(sizes: list[int]) -> None:
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import BEET, run_measured, table
    from operations_bench import fresh_copy, generate

    base = Path(tempfile.mkdtemp(prefix="unmarked-floor-"))
    rows: list[list[object]] = []
    try:
        for size in sizes:
            template, work, done = base / f"template-{size}", base / "work", base / "done"
            generate(template, size)
            for op in ("process", "rename"):
                fresh_copy(template, done)
                run_measured([BEET, f"{op}-unmarked"], done, count_fsync=False)  # the plan's source, untimed
                m = measure_floor(template, done / "library.db", work, op, count=True)
                rows.append([size, op, f"{m.seconds:.2f}", f"{m.work_seconds:.2f}", m.fsyncs])
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(table(["items", "operation", "floor, whole command (s)", "floor, work only (s)", "fsyncs"], rows))


if __name__ == "__main__":
    main()
