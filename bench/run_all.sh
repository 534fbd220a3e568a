#!/usr/bin/env bash
# Every benchmark, one after the other (they share two cores), results in bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
python bench/markers_bench.py --sizes 10000 100000 > bench/out/markers.md
python bench/operations_bench.py --sizes 600 5000 > bench/out/operations.md
python bench/web_bench.py --items 20000 > bench/out/web.md
python bench/sse_load.py --items 3000 --clients 50 > bench/out/sse_load.md
python bench/crash_trials.py --trials 22 --items 1000 > bench/out/crash_trials.md
echo "done: $(date -u)" >> bench/out/ran.txt
