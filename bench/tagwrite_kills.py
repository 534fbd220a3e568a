"""More kill -9 trials than the test runs: full-length tracks, zero padding, growing tags.

Each trial starts a real ``beet normalize-unmarked`` (every 4th:
``process-unmarked``) and kills it a random moment after it began its
1st-3rd tag write; after every kill every audio file that does not decode
to its original samples must have its backup (the next run restores it), and
after the final run every file must (see tests/test_untearable.py, which this
drives).

    python bench/tagwrite_kills.py [--kills 100] [--tracks 240] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.consistency import consistent
from tests.libenv import LibraryEnv, audio_files
from tests.test_untearable import populate, run_trials, temps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="kills that must land mid-run")
    parser.add_argument("--tracks", type=int, default=240, help="full-length tracks (each kill uses up ~2)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    with LibraryEnv() as env:
        env.configure(unmarked={"feat_format": "featuring", "batch_seconds": 0})
        populate(env, args.tracks)
        trials = run_trials(env, random.Random(args.seed), args.kills, max_runs=3 * args.kills)
        env.beet("process-unmarked")
        left = temps(env.lib_path)
        after = trials.check.damaged(audio_files(env.lib_path))
        consistent(env, env.lib_path)
    print(f"    python bench/tagwrite_kills.py --kills {args.kills} --tracks {args.tracks} --seed {args.seed}\n")
    print(f"{trials.line()}; temp files after the final run: {len(left)}, damaged files: {len(after)}; "
          f"library consistent; {time.monotonic() - started:.0f} s")
    if trials.damaged or after:
        print(f"damaged: {trials.damaged}")
        sys.exit(1)


if __name__ == "__main__":
    main()
