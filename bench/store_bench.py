"""The job store's size on disk after N jobs, with and without a tight budget.

One library of real files; ``beet normalize-unmarked --force`` run N times
(every job records an event per item), once with the default
``job_history_mb`` and once with a small one, each on a fresh copy. After
every job: the store's files together (database, WAL, shared memory), and how
long the job took (the budget is enforced as the job ends).

    python bench/store_bench.py --items 2000 --jobs 12 --budget 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BEET, run_measured, table
from operations_bench import fresh_copy, generate, store_mib

from beetsplug.unmarked import CONFIG_DEFAULTS


def jobs(template: Path, work: Path, count: int, budget: float | None) -> list[tuple[float, float]]:
    fresh_copy(template, work)
    if budget is not None:
        with (work / "config.yaml").open("a") as config:
            config.write(f"unmarked: {{job_history_mb: {budget}}}\n")
    sizes = []
    for _ in range(count):
        run = run_measured([BEET, "normalize-unmarked", "--force"], work, count_fsync=False)
        sizes.append((store_mib(work), run.seconds))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--budget", type=float, default=2, help="the small job_history_mb")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="unmarked-storebench-"))
    try:
        template = base / "template"
        generate(template, args.items)
        default = jobs(template, base / "work", args.jobs, None)
        small = jobs(template, base / "work", args.jobs, args.budget)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = [[n + 1, f"{d:.2f}", f"{dt:.2f}", f"{s:.2f}", f"{st:.2f}"]
            for n, ((d, dt), (s, st)) in enumerate(zip(default, small))]
    print(f"{args.items} items per job, `beet normalize-unmarked --force` each time\n")
    print(table(["jobs", f"store MiB (job_history_mb {CONFIG_DEFAULTS['job_history_mb']}, default)", "job s",
                 f"store MiB (job_history_mb {args.budget:g})", "job s"], rows))


if __name__ == "__main__":
    main()
