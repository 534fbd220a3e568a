"""kill -9 at random instants of 1000-item runs: of the CLI, of the whole web
server, and of the gunicorn worker that runs a web job (which another worker
must then adopt and finish under the same job id).

Each trial changes the naming scheme and the feat spelling and clears the
markers, so every run has all 1000 items to retag and move; the run is
killed at a random point after it has committed some work (read from the job
store). After each kill: no file lost or duplicated (counting the journal).
After the last, a full run, then the invariants are counted: items pointing
at missing files, orphaned/duplicated files, markers for work not done.

    python bench/crash_trials.py --trials 22 --items 1000
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table  # noqa: E402

from beetsplug.unmarked.jobs import JobStore, store_path  # noqa: E402
from tests.consistency import files_accounted_for, problems  # noqa: E402
from tests.gates import progress  # noqa: E402
from tests.libenv import BEET, LibraryEnv  # noqa: E402
from tests.servers import beet_web, gunicorn, web_settings  # noqa: E402
from tests.test_crash import populate  # noqa: E402

SCHEMES = ["$albumartist/$album/$track $title", "by-title/$title ($artist)"]


def reset(env: LibraryEnv, trial: int) -> None:
    env.configure(paths={"default": SCHEMES[trial % 2], "singleton": SCHEMES[trial % 2]},
                  unmarked={"batch_seconds": 0.2, "feat_format": ["feat.", "ft."][trial % 2]})
    env.beet("unmark", "--all")


def wait_share(env: LibraryEnv, before: int, share: float, alive: callable) -> None:
    """Until the newest job (newer than ``before``) has done or started ``share``
    of its items: item-granular progress (committed + in flight), not time."""
    store = JobStore(store_path(env.lib))
    deadline = time.monotonic() + 120
    while alive() and time.monotonic() < deadline:
        job = store.list(1)
        if job and job[0]["job"] > before and progress(env, job[0]["job"]) >= share * max(job[0]["total"], 1):
            return
        time.sleep(0.002)


def newest_job(env: LibraryEnv) -> int:
    jobs = JobStore(store_path(env.lib)).list(1)
    return jobs[0]["job"] if jobs else 0


def cli_trial(env: LibraryEnv, rng: random.Random) -> bool:
    before = newest_job(env)
    proc = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_share(env, before, rng.uniform(0.02, 0.9), lambda: proc.poll() is None)
    proc.send_signal(signal.SIGKILL)
    return proc.wait() == -signal.SIGKILL


def server_trial(env: LibraryEnv, rng: random.Random) -> bool:
    """kill -9 of the whole `beet web` mid-job, then a restart: counts if the
    restarted server finished that job by itself (completed, same id, no gap)."""
    server = beet_web(env)
    before = newest_job(env)
    job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
    wait_share(env, before, rng.uniform(0.02, 0.9), lambda: server.proc.poll() is None)
    mid_run = JobStore(store_path(env.lib)).get(job)["status"] == "running"
    server.kill()
    server.stop()
    restarted = beet_web(env)
    try:
        return mid_run and finished_by_another(env, job)
    finally:
        restarted.stop()


def finished_by_another(env: LibraryEnv, job: int) -> bool:
    """Wait for ``job`` to end; True if it completed after being resumed, its
    event ids without gap or repeat."""
    store = JobStore(store_path(env.lib))
    deadline = time.monotonic() + 300
    while store.get(job)["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    summary = store.get(job)
    ids = [seq for seq, _, _ in store.events_after(job, 0, limit=10**6)]
    return summary["status"] == "completed" and bool(summary["resumed"]) and ids == list(range(1, len(ids) + 1))


def worker_trial(env: LibraryEnv, rng: random.Random) -> bool:
    """kill -9 of the worker running the job; it counts only if another worker
    then finished that job by itself (status completed, same id, ids without gap)."""
    server = gunicorn(env, "-w", "2", "--timeout", "60")
    try:
        before = newest_job(env)
        job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        store = JobStore(store_path(env.lib))
        wait_share(env, before, rng.uniform(0.02, 0.9), lambda: server.proc.poll() is None)
        running = store.get(job)
        if running["status"] != "running":
            return False
        os.kill(running["pid"], signal.SIGKILL)
        return finished_by_another(env, job)
    finally:
        server.stop()


TRIALS = {"cli": cli_trial, "server": server_trial, "worker": worker_trial}
WHAT = {"cli": "`beet process-unmarked`", "server": "`beet web` (server process group) mid-job",
        "worker": "the gunicorn sync worker running a web job (2 workers)"}
LANDED = {"cli": "mid-run", "server": "mid-run, then finished by the restarted server",
          "worker": "mid-run, then finished by another worker"}


def run(kind: str, trials: int, items: int, seed: int) -> list[object]:
    rng = random.Random(seed)
    with LibraryEnv() as env:
        web_settings(env)
        populate(env, items)
        landed = 0
        for trial in range(trials):
            reset(env, trial)
            landed += TRIALS[kind](env, rng)
            files_accounted_for(env, env.incoming, env.lib_path)  # raises on a lost or doubled file
        final = env.beet("process-unmarked", check=False)
        left = env.beet_ids("unmarked:true")
        found = problems(env, env.incoming, env.lib_path)
    counts = ", ".join(f"{kind} {len(cases)}" for kind, cases in found.items())
    return [f"kill -9 of {WHAT[kind]}, {items} items", f"{trials} ({landed} {LANDED[kind]})",
            f"no file lost or duplicated after any kill; final run exit {final.returncode}, "
            f"{len(left)} left unmarked; {counts}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=22)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--kinds", nargs="+", choices=list(TRIALS), default=list(TRIALS))
    args = parser.parse_args()
    rows = [run(kind, args.trials, args.items, args.seed) for kind in args.kinds]
    print(table(["fault", "trials", "outcome"], rows))


if __name__ == "__main__":
    main()
