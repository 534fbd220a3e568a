"""What a job reports after it was stopped: a committed batch is counted and
listed once even when Ctrl-C lands while it is shown; a resumed web job counts
as its own exactly what its stopped run committed (the journal says which,
with the marker time), not another job's work nor the user's hand marks.
Each test failed before its fix."""

from __future__ import annotations

import os
import time

import pytest
from beets import logging

from beetsplug.unmarked.events import done_event, item_event, start_event
from beetsplug.unmarked.jobs import JobStore, store_path
from beetsplug.unmarked.journal import UNREPORTED, Journal
from beetsplug.unmarked.operations import OPERATIONS
from beetsplug.unmarked.results import ItemResult, Summary
from beetsplug.unmarked.runner import JobConfig, adopt, open_job

from .consistency import consistent
from .libenv import LibraryEnv
from .shared import Recorder, engine


class CtrlCWhileShown(Recorder):
    """The terminal: Ctrl-C lands while it prints the first batch's lines."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def items(self, numbered: list[tuple[int, ItemResult]], summary: Summary) -> None:
        self.calls += 1
        super().items(numbered, summary)
        if self.calls == 1:
            raise KeyboardInterrupt


def tracks(env: LibraryEnv, count: int) -> list[int]:
    return [env.add_track(f"t{n:02d}.ogg", {"title": f"Song {n}", "artist": "A"}).id for n in range(count)]


# --- a committed batch's report, interrupted -------------------------------------------


def test_ctrl_c_while_a_committed_batch_is_shown_counts_each_item_once(env: LibraryEnv) -> None:
    """The batch is committed and being reported (counted, then shown) when
    Ctrl-C lands. The stopped run reports the committed batch "as it was
    recorded"; the items were counted already, so they are counted (and
    sent) a second time: 6 items, 12 done, current past total."""
    ids = tracks(env, 6)
    sink = CtrlCWhileShown()
    with pytest.raises(KeyboardInterrupt):
        engine(env, "rename").run(ids, sink)
    summary = sink.summary
    assert summary is not None
    reported = [r.item_id for _, r in sink.results]
    assert sorted(reported) == ids, f"each item reported once, got {reported}"
    assert (summary.current, summary.succeeded) == (6, 6), (summary.current, summary.succeeded, summary.total)
    consistent(env, env.incoming, env.lib_path)


def test_a_job_record_lists_each_item_once_after_ctrl_c_while_shown(env: LibraryEnv) -> None:
    """The same through a real job (the CLI's path: the job store's sink
    first, the terminal second): the job's record gets the batch's item
    events twice and its counters say 12 of 6."""
    ids = tracks(env, 6)
    job = open_job(env.lib, OPERATIONS["rename"], "", force=False, origin="cli",
                   config=JobConfig.from_plugin(env.config["unmarked"]), log=logging.getLogger("beets"))
    with job, pytest.raises(KeyboardInterrupt):
        job.run([CtrlCWhileShown()])
    store = JobStore(store_path(env.lib))
    record = store.get(job.id)
    assert record is not None
    _, events = store.item_events(job.id, limit=100)
    listed = sorted(event["item_id"] for event in events)
    assert listed == ids, f"the record lists {listed}"
    assert (record["current"], record["succeeded"], record["total"]) == (6, 6, 6), record


# --- a resumed web job's own markers -------------------------------------------------


def test_a_web_job_resumed_twice_across_another_job_claims_its_own_work(env: LibraryEnv) -> None:
    """Web job A starts, its server dies. A command-line job B runs (on other
    items) while no server is up. A server then resumes A; that process
    commits item 2 (marked now, after B's start) and dies before reporting
    it. A second server resumes A again: item 2 was done by A - by its
    first resumption, which held the library after B. (Found: a time window
    from A's start to B's start called it another run's work, skipped.) The
    dead run's journal says what it committed and with which marker time."""
    ids = tracks(env, 4)
    store = JobStore(store_path(env.lib))
    now = time.time()

    def done_by_a(item_id: int, when: float) -> str:
        item = env.item(item_id)
        item.move()
        item["renamed"] = when
        item.store()
        return os.fsdecode(item.path)

    a = store.create("rename", "", force=False, origin="web")
    store.set_ids(a, ids)
    store.append(a, [start_event(a, "rename", 4)], status="running", started=now - 100, total=4)
    first = done_by_a(ids[0], now - 99)
    store.append(a, [item_event(a, 1, 4, ItemResult(ids[0], first, first))], current=1, succeeded=1)
    # A's server dies here. B, from the command line, on no item of A's.
    b = store.create("rename", "artist:nobody", force=False, origin="cli")
    store.set_ids(b, [])
    store.append(b, [start_event(b, "rename", 0)], status="running", started=now - 50, total=0)
    store.append(b, [done_event(b, Summary(0, "completed"), [])], status="completed", finished=now - 49)
    # The first resumption of A: it commits item 2 (journaling it first, as
    # every commit does), then its process dies before reporting it.
    store.adopt(a, f"resumed by pid 1 on elsewhere at {now - 20:.0f} (0 files repaired)")
    Journal(store, a).intend_many([(UNREPORTED, ids[1], b"", repr(now - 10).encode())])
    done_by_a(ids[1], now - 10)

    job = adopt(env.lib, JobConfig.from_plugin(env.config["unmarked"]), logging.getLogger("beets"))
    assert job is not None and job.id == a
    with job:
        job.run()
    record = store.get(a)
    assert record is not None and record["status"] == "completed", record
    assert (record["succeeded"], record["skipped"]) == (4, 0), (
        f"A did all 4 items; its record says {record['succeeded']} succeeded, {record['skipped']} skipped")
    consistent(env, env.incoming, env.lib_path)


def test_a_resumed_web_job_does_not_claim_an_item_the_user_marked_meanwhile(env: LibraryEnv) -> None:
    """Web job A starts, its server dies. Before a server is back, the user
    marks item 3 as done by hand (``beet mark``; marking takes no claim and
    starts no job). The resumed job finds item 3 marked within its window
    (from its start, no later job) and reports it as its own success, with
    the file where it was: the job says it renamed a file it never touched."""
    ids = tracks(env, 4)
    store = JobStore(store_path(env.lib))
    now = time.time()
    a = store.create("rename", "", force=False, origin="web")
    store.set_ids(a, ids)
    store.append(a, [start_event(a, "rename", 4)], status="running", started=now - 100, total=4)
    env.beet("mark", "--op", "rename", f"id:{ids[2]}")
    untouched = os.fsdecode(env.item(ids[2]).path)

    job = adopt(env.lib, JobConfig.from_plugin(env.config["unmarked"]), logging.getLogger("beets"))
    assert job is not None and job.id == a
    with job:
        job.run()
    _, events = store.item_events(a, limit=100)
    third = next(event for event in events if event["item_id"] == ids[2])
    assert os.fsdecode(env.item(ids[2]).path) == untouched, "the job never moved it"
    assert third.get("skipped"), f"the job reports an item the user marked as its own work: {third}"

