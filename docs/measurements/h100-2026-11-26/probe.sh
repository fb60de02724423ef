#!/bin/bash
# GPU probe: trainer speed for batch 256/512 x eager/compile (3 epochs each), then the
# evaluate/heatmaps/bench paths on CUDA. Everything under $OUT comes back.
set -u
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
log=$OUT/probe.log
{
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())"
t0=$(date +%s.%N)
python3 -m attnlab.data prepare-cifar10 --source .gpu/cifar10-jpeg.tar.gz --out-dir /tmp/c10 || exit 1
echo "prepare: $(echo "$(date +%s.%N) - $t0" | bc) s"
probe() {  # name batch compile model-yaml
  printf 'train: {epochs: 3, batch_size: %s, compile: %s, time_budget_s: null, warmup_epochs: 1%s}\n%s\n' $2 $3 "${PROBE_EXTRA:-}" "$4" > /tmp/p.yaml
  t0=$(date +%s.%N)
  timeout 150 python3 -m attnlab.vit.train --data /tmp/c10 --config /tmp/p.yaml --out-dir /tmp/p_$1 2>&1 | grep -v '^\[vit epoch'
  echo "== $1 (batch $2, compile $3, $4): wall $(echo "$(date +%s.%N) - $t0" | bc) s"
  cat /tmp/p_$1/metrics.csv
}
probe b512 512 false "${PROBE_MODEL:-}"
probe b512c 512 true "${PROBE_MODEL:-}"
probe b256 256 false "${PROBE_MODEL:-}"
probe d384 512 false "model: {dim: ${PROBE_DIM:-384}, heads: 6}"
python3 -m attnlab.vit.evaluate --checkpoint /tmp/p_b512/checkpoint.pt --data .gpu/cifar10-jpeg.tar.gz --out $OUT/probe_eval.json
python3 -m attnlab.vit.heatmaps --checkpoint /tmp/p_b512/checkpoint.pt --data /tmp/c10 --out-dir /tmp/hm && ls /tmp/hm
python3 -m attnlab.bench vit --device cuda --dim 256 --depth 7 --heads 4 --patch-size 4 --batch-size 512 --steps ${BENCH_STEPS:-20} --rounds 3 ${BENCH_EXTRA:-}
} 2>&1 | tee $log
