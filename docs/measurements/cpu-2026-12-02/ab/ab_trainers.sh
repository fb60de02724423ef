#!/usr/bin/env bash
# Old (3b8ef14, before issue 21's shared run loop) against new trainer code, on the same machine,
# alternating old/new so that both see the same machine state, in the order old-new in odd rounds
# and new-old in even ones (a machine that drifts favours neither); one epoch each on a subset.
#   bash docs/measurements/cpu-2026-12-02/ab/ab_trainers.sh [ROUNDS] [MODELS]   (from the checkout,
#   venv active, after the pipeline has prepared results/data/; MODELS default "vit gpt")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
ROUNDS=${1:-2}
MODELS=${2:-vit gpt}
OLD=$(mktemp -d /tmp/ab-old.XXXX)
git -C "$ROOT" archive 3b8ef14 src config workflow/schemas | tar -x -C "$OLD"  # src/attnlab/presets links to config/
DATA=$ROOT/results/data
run() {  # run <old|new> <vit|gpt> <round>
    local src=$ROOT/src; [ "$1" = old ] && src=$OLD/src
    local out; out=$(mktemp -d /tmp/ab-out.XXXX)
    local t0; t0=$(python -c "import time; print(time.time())")
    if [ "$2" = vit ]; then
        PYTHONPATH=$src python -m attnlab.vit.train --config "$HERE/vit.yaml" --data "$DATA/cifar10" --out-dir "$out" >/dev/null 2>&1
    else
        PYTHONPATH=$src python -m attnlab.gpt.train --config "$HERE/gpt.yaml" --data "$DATA/shakespeare/dialogues.pt" \
            --vocab "$DATA/shakespeare/vocab.json" --out-dir "$out" >/dev/null 2>&1
    fi
    local wall; wall=$(python -c "import time; print(time.time() - $t0)")
    python - "$1" "$2" "$3" "$wall" "$out/metrics.csv" <<'PY'
import csv, sys
code, model, rnd, wall, path = sys.argv[1:]
row = list(csv.DictReader(open(path)))[-1]
rate = row.get("images_per_s") or row.get("tokens_per_s")
print(f"{model}\t{code}\t{rnd}\t{float(wall):.2f}\t{float(row['seconds']):.2f}\t{float(rate):.1f}\t{row.get('val_loss')}")
PY
    rm -rf "$out"
}
printf "model\tcode\tround\twall_s\tseconds_column\trate_per_s\tval_loss\n"
for r in $(seq 1 "$ROUNDS"); do
    for m in $MODELS; do
        if [ $((r % 2)) = 1 ]; then run old $m $r; run new $m $r; else run new $m $r; run old $m $r; fi
    done
done
rm -rf "$OLD"
