"""What the configuration fingerprint costs the ``unmarked:`` selection.

A ``renamed`` marker holds only if its fingerprint (``renamed_layout``) is
the current configuration's, so ``unmarked:rename`` / ``unmarked:true`` /
``unmarked:false`` have one more ``EXISTS`` per row. This times the ids the
operations select (``select_ids``, in SQL) and a ``lib.items()`` of a
combined query, in one process, on a generated library where 99 % of the
items carry both markers (and, with the fingerprint, the current one); 1 %
are unmarked. Run it once per build and compare (``--code``: import the
plugin from another checkout, e.g. ``git archive REV beetsplug | tar -x -C DIR``):

    python bench/selection_bench.py --items 5000 --reps 15
    python bench/selection_bench.py --items 5000 --reps 15 --code /tmp/before
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bulk_add_items, new_library  # noqa: E402


def use_code(directory: str) -> None:
    """Import ``beetsplug.unmarked`` from ``directory`` instead of the installed (editable) copy."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
    sys.path.insert(0, directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--code", help="a checkout's directory holding beetsplug/ (default: this one)")
    args = parser.parse_args()
    if args.code:
        use_code(args.code)
    import beets
    from beets import plugins

    with tempfile.TemporaryDirectory() as tmp:
        db, music = Path(tmp) / "library.db", Path(tmp) / "music"
        music.mkdir()
        beets.config["plugins"] = ["unmarked"]
        plugins.load_plugins()
        bulk_add_items(db, music, args.items)
        lib = new_library(db, music)
        from beetsplug.unmarked import markers
        from beetsplug.unmarked.selection import select_ids

        ids = select_ids(lib, markers.unmarked_query("process"))
        markers.set_markers(lib, ids, ("normalized", "renamed"))
        markers.clear_markers(lib, ids[:: 100], ("normalized", "renamed"))
        timed = {
            "select unmarked:rename": lambda: select_ids(lib, markers.unmarked_query("rename")),
            "select unmarked:process": lambda: select_ids(lib, markers.unmarked_query("process")),
            "lib.items('unmarked:false artist:Artist')": lambda: list(lib.items("unmarked:false artist:Artist")),
        }
        results = {}
        for name, run in timed.items():
            counted = len(run())
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            results[name] = {"ms_median": round(statistics.median(times) * 1000, 2),
                             "ms_min": round(min(times) * 1000, 2), "rows": counted}
        print(json.dumps({"items": args.items, "plugin": markers.__file__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
