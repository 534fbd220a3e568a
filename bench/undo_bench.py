"""An undo against the job it undoes, paired: is it as fast (issue 19: at most 1.2x)?

One library of real FLAC/OGG/MP3 files with messy tags (operations_bench's
generator: every title and album messy, every file outside its destination,
so ``process`` writes every file's tags and moves it, ``rename`` moves it).
For each repetition and operation (rename, process, in turn), on a fresh
copy: the job (``beet rename-unmarked`` / ``beet process-unmarked``), timed
whole, then ``beet unmarked-jobs --undo 1`` of it, timed whole; the undo must
put every item back (no failure, no skip, every path as before the job).
Reported: each pair, and the median of the pairs' ratios undo / job. Then,
in a separate untimed pair per operation, the fsync + fdatasync calls of
each under strace.

The job record: on a library of ``--record-size`` items, one process job and
its undo; the bytes of each job's item events (``sum(length(data))`` of the
events table) and how much each grew the store: its file (database + WAL)
and the bytes ``job_history_mb`` counts (``JobStore.keep_within``: the
database's pages in use). From those, how many jobs of 20 000 items the
default budget keeps whole (undoable) before the oldest is compacted.

    python bench/undo_bench.py --size 5000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, Measured, run_measured, table
from operations_bench import fresh_copy, generate, store_mib

from beetsplug.unmarked import CONFIG_DEFAULTS

OPS = ["rename", "process"]
BIG_JOB = 20000  # items of the job whose undoable count the README gives


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def paths(work: Path) -> dict[int, bytes]:
    with sqlite3.connect(work / "library.db") as db:
        return {row[0]: row[1] for row in db.execute("SELECT id, path FROM items")}


def job(work: Path, op: str, count: bool = False) -> Measured:
    """The job on the library in ``work``: it must do every item."""
    m = run_measured([BEET, f"{op}-unmarked"], work, count_fsync=count)
    if " 0 failed, 0 skipped" not in m.output or "(completed)" not in m.output:
        raise RuntimeError(f"{op}-unmarked did not do every item:\n{m.output[-2000:]}")
    return m


def undo(work: Path, before: dict[int, bytes], job_id: int = 1, count: bool = False) -> Measured:
    """Undo of job ``job_id``: every item put back, at the path it had before the job."""
    m = run_measured([BEET, "unmarked-jobs", "--undo", str(job_id)], work, count_fsync=count)
    if " 0 failed, 0 skipped" not in m.output or "(completed)" not in m.output:
        raise RuntimeError(f"the undo did not put every item back:\n{m.output[-2000:]}")
    if paths(work) != before:
        raise RuntimeError("after the undo, some item is not at its path from before the job")
    return m


def pair(template: Path, work: Path, op: str, count: bool = False) -> tuple[Measured, Measured, int]:
    """The job and its undo on a fresh copy; and the store's growth by the undo
    (pages in use: see ``store_used``)."""
    fresh_copy(template, work)
    before = paths(work)
    original = job(work, op, count)
    if paths(work) == before:
        raise RuntimeError(f"{op}-unmarked moved nothing: nothing to undo")
    used = store_used(work)
    back = undo(work, before, count=count)
    return original, back, store_used(work) - used


# --- the record's size --------------------------------------------------------------


def store_used(work: Path) -> int:
    """What ``job_history_mb`` counts (jobs.py ``_used``): the store's pages in use."""
    with sqlite3.connect(work / "library.db-unmarked.db") as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])


def item_event_bytes(work: Path, job_id: int) -> tuple[int, int]:
    """(how many item events, the bytes of their data) of one job."""
    with sqlite3.connect(work / "library.db-unmarked.db") as db:
        count, size = db.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM events "
                                 "WHERE job = ? AND type = 'item'", (job_id,)).fetchone()
        return int(count), int(size)


def record_size(base: Path, size: int) -> tuple[list[list[object]], int, int, int]:
    """A process job of ``size`` items and its undo: each one's record; the
    store's growth by the undo (a second job of as many items), its items, and
    what the store holds besides the jobs (in use after the first, less that growth)."""
    template, work = base / f"record-{size}", base / "record-work"
    generate(template, size)
    fresh_copy(template, work)
    before = paths(work)
    job(work, "process")
    sizes = [(store_used(work), int(store_mib(work) * 2**20))]
    undo(work, before)
    sizes.append((store_used(work), int(store_mib(work) * 2**20)))
    shutil.rmtree(template, ignore_errors=True)
    rows: list[list[object]] = []
    for job_id, name in ((1, "process-unmarked"), (2, "unmarked-jobs --undo 1")):
        events, data = item_event_bytes(work, job_id)
        used, file = sizes[job_id - 1]
        growth = [""] * 2 if job_id == 1 else \
            [f"{(now - then) * 1000 / events / 1024:.0f}" for now, then in zip(sizes[1], sizes[0])]
        rows.append([job_id, f"`beet {name}`", events, data, f"{data / events:.0f}",
                     f"{data * 1000 / events / 1024:.0f}", f"{used / 1024:.0f}", f"{file / 1024:.0f}", *growth])
    grown = sizes[1][0] - sizes[0][0]
    return rows, grown, item_event_bytes(work, 2)[0], sizes[0][0] - grown


def fits(per_1000: float, overhead: int, budget_mb: float, items: int = BIG_JOB) -> int:
    """How many jobs of ``items`` items the budget holds whole: ``keep_within``
    compacts the oldest finished job once the store's pages in use exceed it."""
    return int((budget_mb * 2**20 - overhead) // (per_1000 * items / 1000))


# --- the pairs --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS)
    parser.add_argument("--record-size", type=int, default=1000, help="items of the job whose record is measured")
    parser.add_argument("--dir", type=Path, default=None, help="where the libraries go (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-undobench-", dir=args.dir))
    print(f"load average at the start: {load()}", flush=True)
    try:
        template, work = base / f"template-{args.size}", base / "work"
        generate(template, args.size)
        rows: list[list[object]] = []
        undo_record = ""
        ratios: dict[str, list[float]] = {op: [] for op in args.ops}
        cpu_ratios: dict[str, list[float]] = {op: [] for op in args.ops}
        for rep in range(args.reps):
            for op in args.ops:
                original, back, grown = pair(template, work, op)
                if rep == 0 and op == "process":
                    undo_record = f"{grown * 1000 / args.size / 1024:.0f} KiB per 1 000 items"
                ratios[op].append(back.seconds / original.seconds)
                cpu_ratios[op].append((back.cpu_seconds or 0) / (original.cpu_seconds or 1))
                rows.append([args.size, op, rep + 1, f"{original.seconds:.2f}", f"{back.seconds:.2f}",
                             f"{ratios[op][-1]:.2f}", f"{original.cpu_seconds or 0:.2f} / {back.cpu_seconds or 0:.2f}",
                             f"{cpu_ratios[op][-1]:.2f}", load()])
                print("  " + " | ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
        fsyncs = [[op, *(m.fsyncs for m in pair(template, work, op, count=True)[:2])] for op in args.ops]
        shutil.rmtree(template, ignore_errors=True)
        record, grown, events, overhead = record_size(base, args.record_size)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nPairs (fresh copy each; the job, then its undo), {args.size} items:\n")
    print(table(["items", "op", "pair", "job s", "undo s", "undo ÷ job", "CPU s job / undo", "CPU undo ÷ job",
                 "load (1, 5, 15 min)"], rows))
    print("\n" + table(["op", "pairs", "median undo ÷ job (wall)", "max", "median undo ÷ job (CPU s)"],
                       [[op, len(r), f"**{statistics.median(r):.2f}**", f"{max(r):.2f}",
                         f"{statistics.median(cpu_ratios[op]):.2f}"] for op, r in ratios.items()]))
    print(f"\nfsync + fdatasync calls (strace -f, one untimed pair each), {args.size} items:\n")
    print(table(["op", "job", "undo"], fsyncs))
    print(f"\nThe job record, a process job of {args.record_size} items and its undo:\n")
    print(table(["job", "command", "item events", "their data, bytes", "bytes / item", "KiB / 1 000 items",
                 "store in use after, KiB", "store file after, KiB", "in use grown by the undo, KiB / 1 000",
                 "file grown by the undo, KiB / 1 000"], record))
    per_1000 = grown * 1000 / events
    budget = float(CONFIG_DEFAULTS["job_history_mb"])
    print(f"\nA job of {BIG_JOB} items takes {per_1000 * BIG_JOB / 1000 / 2**20:.1f} MiB of the store "
          f"(the undo's growth, {per_1000 / 1024:.0f} KiB per 1 000 items): job_history_mb {budget:g} "
          f"keeps **{fits(per_1000, overhead, budget)}** such jobs undoable (the store's other pages: "
          f"{overhead / 1024:.0f} KiB).")
    if undo_record:
        print(f"At {args.size} items, the store's pages in use grew by the undo of the process job: {undo_record}.")
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
