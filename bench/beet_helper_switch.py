"""``beet`` with ``helper.available`` recorded and, if asked, without its thread check.

    python bench/beet_helper_switch.py on|off BEET-ARGS...

Used by web_helper_cost.py to run a web server whose jobs may fork the helper
(``on``: the check that a process has no other thread is dropped, here only,
never in the package), and to learn whether each run had it: every answer of
``available`` is appended to the file named by $UNMARKED_BENCH_HELPER_RECORD.
"""

from __future__ import annotations

import os
import sys

RECORD = "UNMARKED_BENCH_HELPER_RECORD"


def main(mode: str, args: list[str]) -> int:
    from beets.ui import main as beet_main

    from beetsplug.unmarked import helper

    shipped = helper.available

    def available(claim: object) -> bool:
        answer = shipped(claim) if mode == "off" else bool(  # type: ignore[arg-type]
            claim is not None and sys.platform.startswith("linux") and hasattr(os, "fork"))
        with open(os.environ[RECORD], "a") as record:
            record.write(f"{answer}\n")
        return answer

    helper.available = available  # type: ignore[assignment]
    return beet_main(args) or 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("on", "off"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
