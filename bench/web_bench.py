"""The web job path under load: latency, stream throughput, server memory.

On a generated library of real files (all unmarked), served by `beet web`:

- time from `POST /api/jobs` to the `start` event and to the first `item`
  event, for a client that connects right after the POST;
- events per second one stream sustains (replaying the finished job) vs
  items per second the engine did, and how far behind a live follower was;
- the server's resident memory before, during (peak) and after the job.

    python bench/web_bench.py --items 20000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import rss_mib, start_beet_web, table  # noqa: E402
from operations_bench import generate  # noqa: E402

from tests.sse_client import EventSource  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--op", default="rename", help="rename is the fastest engine: the hardest on the stream")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="unmarked-webbench-"))
    try:
        print(f"generating {args.items} files ...", file=sys.stderr)
        generate(root, args.items)
        server, base, _ = start_beet_web(root)
        rows = measure(base, server.pid, args.op)
        server.terminate()
        server.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(["measure", "value"], rows))


def measure(base: str, pid: int, op: str) -> list[list[object]]:
    memory = {"before": rss_mib(pid), "peak": 0.0}
    sampling = True

    def sample() -> None:
        while sampling:
            memory["peak"] = max(memory["peak"], rss_mib(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    posted = time.perf_counter()
    created = requests.post(base + "/api/jobs", json={"op": op}, timeout=120).json()
    answered = time.perf_counter()
    first_start = first_item = None
    source = EventSource(base + created["events"])
    count = 0
    for event in source.events():
        count += 1
        if event.type == "start" and first_start is None:
            first_start = time.perf_counter()
        if event.type == "item" and first_item is None:
            first_item = time.perf_counter()
    followed = time.perf_counter()
    sampling = False
    sampler.join()
    summary = requests.get(base + f"/api/jobs/{created['job']}", timeout=30).json()
    engine_seconds = summary["finished"] - summary["started"]
    replay_began = time.perf_counter()
    replayed = sum(1 for _ in EventSource(base + created["events"]).events())
    replay_seconds = time.perf_counter() - replay_began
    memory["after"] = rss_mib(pid)
    total = created["total"]
    return [
        ["items in the job", f"{total} ({op})"],
        ["POST /api/jobs answered (202)", f"{answered - posted:.3f} s"],
        ["POST to `start` event", f"{first_start - posted:.3f} s"],
        ["POST to first `item` event", f"{first_item - posted:.3f} s"],
        ["engine speed", f"{total / engine_seconds:.0f} items/s ({engine_seconds:.1f} s)"],
        ["live follower", f"{count} events; done received {followed - posted - engine_seconds:.2f} s after the job's own run time"],
        ["one stream replaying the finished job", f"{replayed / replay_seconds:.0f} events/s ({replayed} events in {replay_seconds:.2f} s)"],
        ["stream speed / engine speed", f"{(replayed / replay_seconds) / (total / engine_seconds):.1f}x"],
        ["server RSS before / peak / after", f"{memory['before']:.0f} / {memory['peak']:.0f} / {memory['after']:.0f} MiB"],
    ]


if __name__ == "__main__":
    main()
