"""The CLI sees what the page sees: `beet unmarked-jobs` (list, --show, --cancel)
and `beet unmarked-status`, through the real `beet` command."""

from __future__ import annotations

import os
import subprocess

from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import pending

from .gates import library_write_lock, wait_for
from .libenv import BEET, LibraryEnv
from .shared import add_many


def test_status_counts_per_operation(env: LibraryEnv) -> None:
    add_many(env, 5)
    env.beet("mark", "--op", "rename", f"id:{env.ids()[0]}")
    lines = env.beet("unmarked-status").stdout.splitlines()
    assert lines == ["process    5 unmarked", "rename     4 unmarked", "normalize  5 unmarked",
                     "renamed    0 stale (made under another path configuration: rename-unmarked checks them again)",
                     "no job running"]


def test_jobs_are_listed_and_a_record_shows_failures_first(env: LibraryEnv) -> None:
    ids = add_many(env, 4)
    gone = env.item(ids[1]).path
    os.remove(gone)
    run = env.beet("normalize-unmarked", check=False)
    assert run.returncode == 1
    listing = env.beet("unmarked-jobs").stdout
    assert "completed" in listing and "normalize" in listing and "cli" in listing
    assert "4/4 done, 3 ok, 1 failed" in listing
    record = env.beet("unmarked-jobs", "--show", "1").stdout.splitlines()
    assert record[0].split()[:2] == ["1", "completed"]
    failed = record.index("failed items (1):")
    assert os.fsdecode(gone) in record[failed + 1] and f"item {ids[1]}" in record[failed + 1]
    missing = env.beet("unmarked-jobs", "--show", "99", check=False)
    assert missing.returncode == 1 and "no job 99" in missing.stderr


def test_cancel_from_another_terminal(env: LibraryEnv) -> None:
    add_many(env, 20)
    env.configure(unmarked={"batch_size": 5})
    store = JobStore(store_path(env.lib))
    with library_write_lock(env):
        run = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: pending(store), "the run to work on a file")
        refused = env.beet("rename-unmarked", check=False)
        assert "beet unmarked-jobs --cancel 1" in refused.stderr, "the conflict says how to stop it"
        status = env.beet("unmarked-status").stdout.splitlines()
        assert status[-1].startswith(f"running: job 1 (process, from cli, pid {run.pid} on "), status
        said = env.beet("unmarked-jobs", "--cancel", "1").stdout
        assert "cancel requested" in said
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1 and "cancelled" in out + err
    job = store.get(1)
    assert job["status"] == "cancelled" and 0 < job["succeeded"] < 20
    assert len(env.beet_ids("^unmarked:true")) == job["succeeded"]
    again = env.beet("unmarked-jobs", "--cancel", "1", check=False)
    assert again.returncode == 1 and "not running (cancelled)" in again.stderr
