#!/usr/bin/env bash
# Every benchmark, one after the other (they share two cores), results in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
python bench/markers_bench.py --sizes 10000 100000 > bench/out/markers.md
# the query as whole `beet ls` commands, 100 000 items (about 2 minutes)
python bench/markers_bench.py --whole-commands --sizes 100000 --reps 7 > bench/out/markers_whole.md
# paired against beets and the floor, 1k/5k/20k (about 13 minutes; see BENCHMARKS.md)
python bench/operations_bench.py --sizes 1000 5000 20000 --reps 3 2 1 > bench/out/operations.md
# ours vs the plain floor and the beets floor, 1k/5k (about 4 minutes)
python bench/floor_bench.py --sizes 1000 5000 --reps 5 > bench/out/floors.md
python bench/store_bench.py --items 2000 --jobs 12 --budget 2 > bench/out/store.md
python bench/web_bench.py --items 20000 > bench/out/web.md
python bench/sse_load.py --items 3000 --clients 50 > bench/out/sse_load.md
python bench/sse_followers.py --items 5000 --followers 0 20 50 > bench/out/sse_followers.md
python bench/crash_trials.py --trials 22 --items 1000 > bench/out/crash_trials.md
python bench/mark_http_bench.py --items 100000 --preview-items 20000 > bench/out/mark_http.md
python bench/undo_bench.py --size 5000 --reps 3 > bench/out/undo.md
python bench/web_helper_cost.py --size 2000 --reps 3 > bench/out/web_helper_cost.md
echo "done: $(date -u)" >> bench/out/ran.txt
