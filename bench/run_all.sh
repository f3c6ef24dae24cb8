#!/usr/bin/env bash
# Every benchmark in sequence, raw JSON and markdown tables into bench/results/, figures into docs/.
# Usage: bash bench/run_all.sh [--quick]   (full: ~35 min of wall time on a busy 2-core box; quick: ~15 min,
# into bench/results/quick/)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=("$@")
out=bench/results
figures=docs
if [[ " $* " == *" --quick "* ]]; then  # quick figures never overwrite the full ones
    out=bench/results/quick
    figures=$out
fi
mkdir -p "$out"
run() {  # name, script args...
    local name=$1
    shift
    rm -f "$out/$name.md"
    python3 "$@" "${mode[@]}" --json "$out/$name.json" --out "$out/$name.md"
}
run quality bench/quality.py
run schedule bench/schedule.py --seeds 2
run alignment bench/alignment.py
run alignment_fisher bench/alignment.py --methods gisp --importance fisher
run speed bench/speed.py --configs stories260K,random-100M --importances taylor,fisher
run speed_ckpt bench/speed.py --configs random-100M --checkpointing
run speed_1b bench/speed.py --configs random-1.1B
run inference bench/inference.py
python3 bench/plots.py --quality "$out/quality.json" --schedule "$out/schedule.json" --outdir "$figures"
