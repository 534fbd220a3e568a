"""The demo a newcomer runs first: `beets-unmarked-demo --web` shows the page,
with every track still to do, and leaves nothing in the temp directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from .servers import free_port

DEMO = shutil.which("beets-unmarked-demo", path=os.path.dirname(sys.executable)) or "beets-unmarked-demo"


def test_demo_web_serves_the_page_with_every_track_unprocessed() -> None:
    with tempfile.TemporaryDirectory(prefix="unmarked-demo-test-") as base:
        temp = Path(base) / "tmp"  # the demo's own temp directory: must stay empty
        temp.mkdir()
        port = free_port()
        demo = subprocess.Popen([DEMO, "--web", "--port", str(port), "--tracks", "9", "--dir", f"{base}/demo"],
                                env={**os.environ, "TMPDIR": str(temp)}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            lines = []
            for line in demo.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if line.startswith("The page:"):
                    break
            expected = f"The page: http://127.0.0.1:{port}/unmarked  (Ctrl-C stops the server)"
            assert lines and lines[-1].strip() == expected, "".join(lines)
            page = _get(f"http://127.0.0.1:{port}/unmarked")
            assert page.status_code == 200 and "Unmarked tracks" in page.text
            counts = _get(f"http://127.0.0.1:{port}/api/unmarked", params={"op": "process"}).json()
            assert counts["count"] == 9, "every track still to do"
            started = requests.post(f"http://127.0.0.1:{port}/api/plan", json={"op": "process"}, timeout=30)
            assert started.status_code == 200 and started.json()["retags"] == 9
        finally:
            os.killpg(demo.pid, signal.SIGINT)
            demo.wait(timeout=30)
        assert sorted(os.listdir(temp)) == [], "the demo left files in the temp directory"


def _get(url: str, **kwargs: object) -> requests.Response:
    """The server starts after the line is printed: ask until it answers."""
    for _ in range(300):
        try:
            return requests.get(url, timeout=5, **kwargs)  # type: ignore[arg-type]
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")
