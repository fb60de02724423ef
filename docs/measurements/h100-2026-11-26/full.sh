#!/bin/bash
# GPU preset, measured: config/config.yaml's vit section (+ $VIT_OVERRIDES, a YAML dict of
# model/train overrides) on the shared JPEG copy, then evaluate and heatmaps.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
t0=$(date +%s.%N)
[ -f /tmp/c10/test.pt ] || python3 -m attnlab.data prepare-cifar10 --source .gpu/cifar10-jpeg.tar.gz --out-dir /tmp/c10 || exit 1
echo "prepare: $(echo "$(date +%s.%N) - $t0" | bc) s"
python3 - <<'PY'
import os, yaml
cfg = yaml.safe_load(open("config/config.yaml"))["vit"]
cfg.pop("runs")
for sec, d in (yaml.safe_load(os.environ.get("VIT_OVERRIDES") or "{}") or {}).items():
    cfg[sec].update(d)
yaml.safe_dump(cfg, open("/tmp/vit.yaml", "w"))
print(cfg)
PY
rm -rf /tmp/run
t0=$(date +%s.%N)
python3 -m attnlab.vit.train --data /tmp/c10 --config /tmp/vit.yaml --out-dir /tmp/run 2>&1 | grep -v '^\[vit epoch'
echo "train wall: $(echo "$(date +%s.%N) - $t0" | bc) s"
python3 -m attnlab.vit.evaluate --checkpoint /tmp/run/checkpoint.pt --data .gpu/cifar10-jpeg.tar.gz --out /tmp/run/eval.json --confusion /tmp/run/confusion.png
python3 -m attnlab.vit.heatmaps --checkpoint /tmp/run/checkpoint.pt --data /tmp/c10 --out-dir /tmp/run
} 2>&1 | tee $OUT/full.log
cp /tmp/run/checkpoint.pt $OUT/
tar czf $OUT/run.tgz -C /tmp/run --exclude checkpoint.pt --exclude resume .
