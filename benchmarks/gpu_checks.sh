#!/usr/bin/env bash
# The CUDA checks, in one run on a lent GPU machine (see docs/benchmarks.md):
# the CUDA tests, epoch timings for fp32/bf16/compile, and the default 60-epoch training.
# Expects the dataset in .data/fashion-mnist and, where the machine lacks them, wheels in .whl/.
set -uo pipefail
source scripts/device_env.sh
DATA=.data/fashion-mnist
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_ae.py 2>&1 | tail -15 | tee "$OUT/pytest.txt"

python3 benchmarks/epoch_throughput.py --data-dir $DATA --device cuda --workers 0 4 \
  --repeats 3 --json | tee "$OUT/bench.jsonl"
for variant in "--precision bf16" "--compile" "--precision bf16 --compile"; do
  # shellcheck disable=SC2086
  python3 benchmarks/epoch_throughput.py --data-dir $DATA --device cuda --skip-dataloader \
    --repeats 3 --json $variant | tee -a "$OUT/bench.jsonl"
done

for variant in "" "--precision bf16 --compile"; do
  # shellcheck disable=SC2086
  FMT_HOME=/tmp/store python3 -m fmnist_toolkit ae train --data-dir $DATA --device cuda \
    --json --quiet --plots "$OUT" --name "ae-16-cuda${variant:+-bf16-compile}" $variant \
    | tee -a "$OUT/train.jsonl"
done
