"""What web jobs lose by running without the helper process, paired.

The engine forks its helper (helper.py: the second process that writes tags
and moves files, the second core's share) only from a single-threaded process
(``helper.available``): a web server's job thread that forked while another
server thread was inside SQLite left the helper holding SQLite's memory mutex
for good. So a web job does its file work on one core. This measures the cost.

One library of real FLAC/OGG/MP3 files with messy tags (operations_bench's
generator: ``process`` writes every file's tags and moves it, ``rename``
moves it). For each repetition and operation, each on a fresh copy, in an
order that rotates from one repetition to the next:

- A: a web job as shipped: ``beet web`` (``web: {readonly: no}``),
  ``POST /api/jobs {"op": ...}``, then ``GET /api/jobs/ID`` every
  ``--poll`` seconds until it has ended (no helper);
- B: the same with the helper allowed in the web job: the server runs through
  beet_helper_switch.py ``on``, which replaces ``helper.available`` by one
  without the thread check (here only: never in the package; the hang it
  guards against is possible, and a run that hit it would fail, not count);
- C: the command line, ``beet <op>-unmarked`` (which uses the helper), timed
  whole (start-up included) with GNU time.

Every run goes through beet_helper_switch.py (``off`` for A and C), which
records what ``helper.available`` answered: A must not have had the helper, B and C must.
Reported per run: wall time (web: POST until the poll saw the job end;
command line: the whole command), the job's own time (its ``started`` to
``finished`` in the job store, the same measure for all three), CPU seconds
(the server's user + sys and its reaped children's, read from /proc around
the job; the command's, children included), and the load average. Then the
median of the pairs' ratios A/B and A/C.

    python bench/web_helper_cost.py --size 2000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from beet_helper_switch import RECORD
from common import free_port, run_measured, table
from operations_bench import fresh_copy, generate

ACTIVE = ("queued", "running")
SWITCH = Path(__file__).resolve().parent / "beet_helper_switch.py"
VARIANTS = {"A": "web, no helper (as shipped)", "B": "web, helper allowed", "C": "command line (helper)"}
OPS = ["process", "rename"]


# --- the runs ---------------------------------------------------------------------


def wrapper(mode: str, *args: str) -> list[str]:
    """``beet ARGS`` through beet_helper_switch.py: helper allowed in any process (``on``) or as shipped."""
    return [sys.executable, str(SWITCH), mode, *args]


def helper_answers(record: Path) -> list[bool]:
    return [line == "True" for line in record.read_text().split()] if record.exists() else []


@dataclass
class Run:
    wall: float  # web: POST until the poll saw the end; command line: the whole command
    job: float  # the job store's started -> finished
    cpu: float  # user + sys (children included)
    helper: bool


def job_seconds(work: Path) -> float:
    with sqlite3.connect(work / "library.db-unmarked.db") as db:
        status, started, finished, total, succeeded = db.execute(
            "SELECT status, started, finished, total, succeeded FROM jobs ORDER BY id DESC LIMIT 1").fetchone()
    if status != "completed" or succeeded != total:
        raise RuntimeError(f"the job did not do every item: {status}, {succeeded} of {total}")
    return float(finished - started)


def server_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of a process (reaped children included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def web_run(work: Path, op: str, mode: str, poll: float) -> Run:
    import requests

    record = work / "helper-record.txt"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(wrapper(mode, "web", "127.0.0.1", str(port)),
                              env={**os.environ, "BEETSDIR": str(work), "HOME": str(work), RECORD: str(record)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                requests.get(base + "/api/jobs", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        cpu_before = server_cpu(server.pid)
        posted = time.perf_counter()
        answer = requests.post(base + "/api/jobs", json={"op": op}, timeout=120)
        answer.raise_for_status()
        job = answer.json()["job"]
        while requests.get(f"{base}/api/jobs/{job}", timeout=30).json()["status"] in ACTIVE:
            time.sleep(poll)
        wall = time.perf_counter() - posted
        time.sleep(0.5)  # the helper reaped: its CPU in the server's cutime
        cpu = server_cpu(server.pid) - cpu_before
    finally:
        server.terminate()
        server.wait()
    answers = helper_answers(record)
    return Run(wall, job_seconds(work), cpu, bool(answers) and answers[-1])


def cli_run(work: Path, op: str) -> Run:
    record = work / "helper-record.txt"
    m = run_measured(wrapper("off", f"{op}-unmarked"), work, extra_env={RECORD: str(record)}, count_fsync=False)
    if " 0 failed, 0 skipped" not in m.output or "(completed)" not in m.output:
        raise RuntimeError(f"{op}-unmarked did not do every item:\n{m.output[-2000:]}")
    answers = helper_answers(record)
    return Run(m.seconds, job_seconds(work), m.cpu_seconds or 0.0, bool(answers) and answers[-1])


def run(variant: str, template: Path, work: Path, op: str, poll: float) -> Run:
    fresh_copy(template, work)
    result = cli_run(work, op) if variant == "C" else web_run(work, op, "on" if variant == "B" else "off", poll)
    if result.helper != (variant != "A"):
        raise RuntimeError(f"variant {variant} ({VARIANTS[variant]}) ran {'with' if result.helper else 'without'}"
                           " the helper")
    return result


# --- the pairs ----------------------------------------------------------------------


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def with_web(template: Path) -> None:
    """The web plugin, writes allowed: the same configuration for all three."""
    config = template / "config.yaml"
    config.write_text(config.read_text().replace("- unmarked", "- unmarked\n- web") + "\nweb: {readonly: no}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ops", nargs="+", choices=OPS, default=OPS)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between a web run's GET /api/jobs/ID")
    parser.add_argument("--dir", type=Path, default=None, help="where the libraries go (default: a temp dir)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-webhelper-", dir=args.dir))
    print(f"load average at the start: {load()}", flush=True)
    rows: list[list[object]] = []
    ratios: dict[tuple[str, str, str], list[float]] = {}
    try:
        template, work = base / f"template-{args.size}", base / "work"
        generate(template, args.size)
        with_web(template)
        for rep in range(args.reps):
            for op in args.ops:
                order = "ABC"[rep % 3:] + "ABC"[:rep % 3]
                runs = {v: run(v, template, work, op, args.poll) for v in order}
                for what in ("wall", "job", "cpu"):
                    a = getattr(runs["A"], what)
                    for other in "BC":
                        ratios.setdefault((op, what, other), []).append(a / getattr(runs[other], what))
                row = [args.size, op, rep + 1, order, *(f"{runs[v].wall:.2f}" for v in "ABC"),
                       *(f"{runs[v].job:.2f}" for v in "ABC"), *(f"{runs[v].cpu:.2f}" for v in "ABC"),
                       f"{runs['A'].wall / runs['B'].wall:.2f}", f"{runs['A'].wall / runs['C'].wall:.2f}", load()]
                rows.append(row)
                print("  " + " | ".join(map(str, row)), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nRuns (fresh copy each; A {VARIANTS['A']}, B {VARIANTS['B']}, C {VARIANTS['C']}), {args.size} items:\n")
    print(table(["items", "op", "rep", "order", "wall A", "wall B", "wall C", "job A", "job B", "job C",
                 "CPU A", "CPU B", "CPU C", "wall A/B", "wall A/C", "load (1, 5, 15 min)"], rows))
    summary = [[op, len(ratios[(op, "wall", "B")]),
                *(f"**{statistics.median(ratios[(op, what, other)]):.2f}**" if what == "wall"
                  else f"{statistics.median(ratios[(op, what, other)]):.2f}"
                  for other in "BC" for what in ("wall", "job", "cpu"))]
               for op in args.ops]
    print("\n" + table(["op", "runs", "A/B wall", "A/B job", "A/B CPU", "A/C wall", "A/C job", "A/C CPU"],
                       summary))
    print(f"\nload average at the end: {load()}")


if __name__ == "__main__":
    main()
