#!/usr/bin/env bash
# The device checks of issue #14 in one run on a lent GPU machine (docs/benchmarks.md).
#   scripts/gpu_checks.sh bench   CUDA tests; benchmarks/run.py on CUDA (full data) and, at the
#                                 same time on two other cores, on the CPU (--quick, fp32 and
#                                 bf16: the host's CPU may have native bf16); the AE and
#                                 classifier defaults end to end through the CLI
#   scripts/gpu_checks.sh train   the GAN defaults end to end (mlp 300 epochs, dcgan) and 32
#                                 tune trials of 6 epochs; the store comes back for `fmt gan eval`
# Expects the dataset in .data/fashion-mnist and the wheels the machine lacks in .whl/.
set -uo pipefail
source scripts/device_env.sh
export PYTHONUNBUFFERED=1 FMT_HOME=/tmp/store
DATA=${DATA:-.data/fashion-mnist}
STAGE=${1:-bench}
LOGS=$OUT/logs
mkdir -p "$LOGS" "$FMT_HOME"
START=$SECONDS
stamp() { echo "[$((SECONDS - START)) s] $*"; }
cli() {  # cli NAME LIMIT ARGS...: one fmt command on CUDA, JSON to $LOGS/NAME.json
  local name=$1 limit=$2
  shift 2
  timeout -s INT "$limit" taskset -c 2-15 python3 -m fmnist_toolkit "$@" --data-dir "$DATA" \
    --device cuda --quiet --json >"$LOGS/$name.json" 2>"$LOGS/$name.err"
  stamp "$name: exit $? $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print({k: d[k] for k in ('seconds', 'test_mse', 'test_accuracy', 'final') if k in d})" "$LOGS/$name.json" 2>/dev/null)"
}

if [ "$STAGE" = bench ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
  grep -m1 -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tee -a "$LOGS/gpu.txt"
  lscpu | grep -E 'Model name|^CPU\(s\)' | tee -a "$LOGS/gpu.txt"
  python3 -m pytest -q -p no:cacheprovider -x tests/test_gpu.py 2>&1 | tail -5 | tee "$LOGS/pytest-gpu.txt"
  stamp "tests done"
  # The CPU benchmark on two cores of their own, beside the CUDA one.
  (
    for precision in fp32 bf16; do
      CUDA_VISIBLE_DEVICES= taskset -c 0,1 python3 benchmarks/run.py --device cpu --quick \
        --data-dir "$DATA" \
        --precision $precision --only ae-seed ae-wide clf-frozen clf-unfreeze gan-mlp gan-dcgan \
        --json >"$LOGS/bench-cpu2-$precision.json" 2>"$LOGS/bench-cpu2-$precision.err"
    done
  ) &
  taskset -c 2-15 python3 benchmarks/run.py --device cuda --data-dir "$DATA" --json \
    --only ae-seed ae-wide clf-frozen clf-unfreeze gan-mlp gan-dcgan tune-trial \
    >"$LOGS/bench-cuda.json" 2>"$LOGS/bench-cuda.err"
  stamp "cuda benchmark done"
  cli ae-16 60 ae train --name ae-16
  cli ae-16-eager 120 ae train --name ae-16-eager --no-cuda-graphs
  cli clf-ae-16 60 clf finetune --encoder ae-16 --name clf-ae-16
  cli clf-ae-16-ft 120 clf finetune --encoder ae-16 --unfreeze --name clf-ae-16-ft
  wait
  stamp "cpu benchmark done"
else
  python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$LOGS/pytest-gpu.txt" 2>&1
  tail -3 "$LOGS/pytest-gpu.txt"
  (
    for precision in fp32 bf16; do
      CUDA_VISIBLE_DEVICES= taskset -c 0,1 python3 benchmarks/run.py --device cpu --quick \
        --data-dir "$DATA" --precision $precision \
        --only ae-seed ae-wide clf-frozen clf-unfreeze gan-mlp gan-dcgan \
        --json >"$LOGS/bench-cpu2-$precision.json" 2>"$LOGS/bench-cpu2-$precision.err"
    done
  ) &
  cli gan-mlp 120 gan train --arch mlp --name gan-mlp
  cli gan-dcgan 120 gan train --arch dcgan --name gan-dcgan
  taskset -c 2-15 python3 benchmarks/run.py --device cuda --quick --data-dir "$DATA" --json \
    --only ae-seed ae-wide clf-frozen clf-unfreeze gan-mlp gan-dcgan \
    >"$LOGS/bench-cuda.json" 2>"$LOGS/bench-cuda.err"
  stamp "cuda benchmark done"
  cli tune 90 ae tune --study bench --trials 32 --epochs 6 --jobs 8
  wait
  stamp "cpu benchmark done"
  find "$FMT_HOME/.checkpoints" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null
  rm -rf "$FMT_HOME/.locks"
  tar czf "$OUT/store.tar.gz" -C "$FMT_HOME" .
fi
tar czf "$OUT/logs-$STAGE.tar.gz" -C "$LOGS" .
stamp "all done"
