"""Who owns the library, asked of the kernel: paused jobs, other PID namespaces,
a job store deleted or corrupted, bad config, Ctrl-C, and web jobs that outlive
their process. Real processes, real signals, real servers.

Jobs are held mid-run by holding the library database's write lock from the
test (as another beets writer would): the job selects and works on its first
items, then waits at its commit, so every check below happens while the job
is provably running, on a machine of any speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from beetsplug.unmarked.jobs import store_path
from beetsplug.unmarked.journal import pending
from beetsplug.unmarked.web.adopter import ADOPT_EVERY

from .consistency import consistent
from .gates import library_write_lock, store, wait_for
from .libenv import BEET, LibraryEnv, audio_files
from .servers import beet_web, gunicorn, web_settings
from .shared import add_many, start_beet
from .signals import sigint_ignored
from .sse_client import EventSource
from .test_web_api import wait_status


def working(env: LibraryEnv) -> bool:
    """A job has touched at least one file (its journal has a pending intent)."""
    return bool(pending(store(env)))


def test_a_paused_job_still_owns_the_library(env: LibraryEnv) -> None:
    """SIGSTOP for longer than the old 15 s staleness window: the job is not
    taken for dead; after SIGCONT it finishes and everything is consistent."""
    add_many(env, 60)
    with library_write_lock(env):
        first = start_beet(env, "process-unmarked")
        wait_for(lambda: working(env), "the first run to work on a file")
        first.send_signal(signal.SIGSTOP)
    try:
        time.sleep(16)
        second = env.beet("rename-unmarked", check=False)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "is running on this library" in second.stderr
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="a new PID namespace needs root and util-linux's unshare (CI runs as root)")
def test_a_run_from_another_pid_namespace_sees_the_running_job(env: LibraryEnv) -> None:
    add_many(env, 30)
    with library_write_lock(env):
        first = start_beet(env, "process-unmarked")
        wait_for(lambda: working(env), "the first run to work on a file")
        other = start_beet(env, "normalize-unmarked", prefix=("unshare", "--pid", "--fork", "--mount-proc"))
        out, err = other.communicate(timeout=60)
    assert other.returncode == 1, out + err
    assert "is running on this library" in err and "Traceback" not in err
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert store(env).get(1)["status"] == "completed"
    consistent(env, env.incoming, env.lib_path)


def test_a_job_store_deleted_mid_run_stops_the_job_and_admits_no_second(env: LibraryEnv) -> None:
    """The store (and its journal) deleted while a job waits at its commit: no
    second job is admitted, and the first does not commit on the strength of a
    claim it lost: it undoes its batch on disk and stops with a clear message."""
    add_many(env, 10)
    env.configure(unmarked={"batch_size": 10, "batch_seconds": 60})
    path = store_path(env.lib)
    with library_write_lock(env):
        first = start_beet(env, "process-unmarked")
        # 10 items, each journaled twice (tags, move), every file moved (the
        # helper process may do the file work after the journaling): waiting to commit
        wait_for(lambda: len(pending(store(env))) == 20 and len(audio_files(env.lib_path)) == 10,
                 "the batch to wait at its commit")
        # Held still while the second asks: its next fencing check (at its next
        # commit attempt, up to beets' timeout later) would end it, and a job
        # that has ended admits the next one rightly.
        first.send_signal(signal.SIGSTOP)
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            second = env.beet("normalize-unmarked", check=False)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 1 and "is running on this library" in second.stderr, second.stderr
    out, err = first.communicate(timeout=120)
    assert first.returncode == 1, out + err
    assert "job store" in err and "deleted or replaced" in err and "Traceback" not in err
    assert env.beet_ids("unmarked:true") == env.ids(), "nothing committed after the claim was lost"
    consistent(env, env.incoming, env.lib_path)  # its unrecorded batch was undone on disk
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_a_corrupt_job_store_is_a_clear_error_not_a_traceback(env: LibraryEnv) -> None:
    add_many(env, 3)
    path = store_path(env.lib)
    env.beet("normalize-unmarked")
    with open(path, "wb") as junk:
        junk.write(os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    result = env.beet("process-unmarked", check=False)
    assert result.returncode == 1
    assert path in result.stderr and "Move it aside" in result.stderr and "Traceback" not in result.stderr

    web_settings(env)
    server = beet_web(env)
    try:
        refused = server.post("/api/jobs", json={"op": "process"})
        assert refused.status_code == 503 and path in refused.json()["error"]
    finally:
        server.stop()
    os.rename(path, path + ".broken")  # what the message says to do
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []


def test_bad_config_is_refused_before_any_claim(env: LibraryEnv) -> None:
    add_many(env, 3)
    web_settings(env)
    env.configure(unmarked={"batch_size": "lots"})
    cli = env.beet("process-unmarked", check=False)
    assert cli.returncode == 1 and "batch_size" in cli.stderr and "Traceback" not in cli.stderr
    web = env.beet("web", "127.0.0.1", "0", check=False)  # refused as it loads, before it serves
    assert web.returncode == 1 and "unmarked.batch_size" in web.stderr and "Traceback" not in web.stderr
    env.configure(unmarked={"batch_size": 50})
    env.beet("process-unmarked")  # no job row or claim was left: the library is free
    assert env.beet_ids("unmarked:true") == []


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_exits_130(env: LibraryEnv) -> None:
    add_many(env, 30)
    with library_write_lock(env):
        run = start_beet(env, "process-unmarked")
        assert not sigint_ignored(run.pid), "the run can be interrupted (conftest: sigint_delivered)"
        wait_for(lambda: working(env), "the run to work on a file")
        run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, out + err
    consistent(env, env.incoming, env.lib_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_put_the_batch_back(env: LibraryEnv, signum: int) -> None:
    """The everyday stop signals (systemd, `timeout`, a closed terminal) end a
    run like Ctrl-C: files and library agree at once, so a `beet update` before
    the next run finds every file where the library says (before: killed
    mid-batch, and `beet update` then deleted the moved items)."""
    ids = add_many(env, 30)
    with library_write_lock(env):
        run = start_beet(env, "process-unmarked")
        wait_for(lambda: working(env), "the run to work on a file")
        run.send_signal(signum)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, out + err
    assert signal.Signals(signum).name in out + err
    consistent(env, env.incoming, env.lib_path)
    env.beet("update")
    assert env.ids() == ids, "beet update removed nothing"
    env.beet("process-unmarked")
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_a_run_started_under_nohup_outlives_its_terminal(env: LibraryEnv) -> None:
    """``nohup beet process-unmarked &``: SIGHUP was ignored when the run
    started, so a closed terminal (SIGHUP) must not stop it (it did: the run
    put in its own handler regardless)."""
    add_many(env, 30)
    with library_write_lock(env):  # the run cannot finish before the signal (gates.py)
        run = subprocess.Popen([BEET, "process-unmarked"], env={**os.environ, "BEETSDIR": str(env.temp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
        wait_for(lambda: working(env), "the run to work on a file")
        run.send_signal(signal.SIGHUP)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, out + err
    assert "30 succeeded" in out
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def follow_across(server_urls: list[str], job: int, after: int = 0) -> list:
    """Events of ``job`` from the first URL that answers, resuming by Last-Event-ID."""
    source = EventSource(f"{server_urls[0]}/api/jobs/{job}/events", last_event_id=after or None)
    source.retry = 0.2
    return list(source.events())


def assert_one_job_done_once(events: list, total: int, job: int, summary: dict) -> None:
    assert [e.id for e in events] == list(range(1, total + 3)), "every event once, in order, no gap"
    assert events[0].type == "start" and events[-1].type == "done"
    assert [e.data["current"] for e in events[1:-1]] == list(range(1, total + 1))
    assert {e.data["job"] for e in events} == {job}
    assert summary["status"] == "completed" and summary["succeeded"] + summary["skipped"] == total
    assert summary["resumed"], "the record says it was resumed, and by whom"


def test_a_killed_gunicorn_worker_s_job_is_finished_by_another_worker(env: LibraryEnv) -> None:
    web_settings(env)
    add_many(env, 40)
    server = gunicorn(env, "-w", "2", "--timeout", "30")
    try:
        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
            wait_for(lambda: working(env), "the job to work on a file")
            worker = store(env).get(job)["pid"]
            os.kill(worker, signal.SIGKILL)
        summary = wait_status(server, job, {"completed", "failed", "interrupted"}, timeout=60)
        events = follow_across([server.base], job)
    finally:
        server.stop()
    assert summary["pid"] != worker
    assert_one_job_done_once(events, 40, job, summary)
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)


def test_gunicorn_preload_workers_answer_and_adopt(env: LibraryEnv) -> None:
    """With --preload the app is loaded in gunicorn's master before it forks:
    the master must not adopt (its locks would be held in every worker), each
    worker must, and no worker may start with a lock held (it hung before)."""
    web_settings(env)
    add_many(env, 40)
    server = gunicorn(env, "-w", "4", "--preload", "--timeout", "30")
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: server.get("/api/jobs", timeout=10).status_code, range(16)))
        assert answers == [200] * 16
        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
            wait_for(lambda: working(env), "the job to work on a file")
            worker = store(env).get(job)["pid"]
            assert worker != server.proc.pid, "a worker runs the job, not the master"
            os.kill(worker, signal.SIGKILL)
        summary = wait_status(server, job, {"completed", "failed", "interrupted"}, timeout=60)
        events = follow_across([server.base], job)
    finally:
        server.stop()
    assert summary["pid"] not in (worker, server.proc.pid)
    assert_one_job_done_once(events, 40, job, summary)
    consistent(env, env.incoming, env.lib_path)


def test_a_read_only_server_resumes_nothing(env: LibraryEnv) -> None:
    """Restarting the server read-only is how a user stops changes: an orphaned
    web job waits (three adopter rounds) until a writable server resumes it."""
    web_settings(env)
    add_many(env, 20)
    server = beet_web(env)
    with library_write_lock(env):
        job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
        wait_for(lambda: working(env), "the job to work on a file")
        server.kill()
        server.stop()
    web_settings(env, readonly=True)
    quiet = beet_web(env)
    try:
        time.sleep(3 * ADOPT_EVERY + 0.5)  # a negative: nothing may happen for three rounds
        summary = quiet.get(f"/api/jobs/{job}").json()
        assert summary["status"] == "running" and not summary["resumed"]
    finally:
        quiet.stop()
    web_settings(env)
    writable = beet_web(env)
    try:
        summary = wait_status(writable, job, {"completed", "failed", "interrupted"}, timeout=60)
    finally:
        writable.stop()
    assert summary["status"] == "completed" and summary["resumed"]
    consistent(env, env.incoming, env.lib_path)


def test_beet_web_killed_and_restarted_finishes_the_job(env: LibraryEnv) -> None:
    web_settings(env)
    add_many(env, 40)
    server = beet_web(env)
    try:
        with library_write_lock(env):
            job = server.post("/api/jobs", json={"op": "process"}).json()["job"]
            early = EventSource(server.url(f"/api/jobs/{job}/events"))
            seen = [next(iter(early.one_connection()))]  # the start event, from the first server
            wait_for(lambda: working(env), "the job to work on a file")
            server.kill()
    finally:
        server.stop()
    assert store(env).get(job)["status"] == "running"  # a reader leaves it for a server to resume
    assert env.beet("ls", "-f", "$id").returncode == 0
    restarted = beet_web(env)
    try:
        summary = wait_status(restarted, job, {"completed", "failed", "interrupted"}, timeout=60)
        rest = follow_across([restarted.base], job, after=seen[-1].id)
    finally:
        restarted.stop()
    assert_one_job_done_once(seen + rest, 40, job, summary)
    assert env.beet_ids("unmarked:true") == []
    consistent(env, env.incoming, env.lib_path)
