#!/usr/bin/env bash
# The trainings of docs/models.md that need a GPU, in one run on a lent H100 (about 8 minutes):
# the wide autoencoder and its classifiers, the report's 300-epoch MLP GAN and DCGAN variants.
# Runs them side by side on the one GPU (each is launch-bound, far from filling it).
# Expects the dataset in .data/fashion-mnist and, where the machine lacks them, wheels in .whl/.
# Writes to $OUT: models.tar.part* (the store), logs.tar.gz (JSON results, plots), run.log.
# A run still going at its deadline is interrupted (SIGINT, like Ctrl-C): its checkpoint is
# kept in the store, to resume with `fmt gan train --name NAME --resume` on any device.
# FMT_HOME, LOGS (/tmp/store, /tmp/logs) are emptied first.
# Measured on an H100 (2026-11-26): eight runs at once each went at a half to a fifth of its
# solo speed, so within 440 s the autoencoder, the frozen classifier and the 50-epoch DCGAN
# finished; the fine-tuned classifiers were run again two at a time (124 s), and the MLP went on
# from its checkpoint (112 of 300 epochs on the GPU, the rest on a CPU with --resume).
set -uo pipefail
source scripts/device_env.sh
export PYTHONUNBUFFERED=1
export FMT_HOME=/tmp/store OMP_NUM_THREADS=1
DATA=${DATA:-.data/fashion-mnist}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu DATA=<synthetic set> tries the script out on a CPU
LOGS=/tmp/logs
rm -rf "$LOGS" "$FMT_HOME"
mkdir -p "$LOGS" "$FMT_HOME"
START=$SECONDS
DEADLINE=${DEADLINE:-450}  # seconds after START at which every training is interrupted
left() { local n=$((DEADLINE - (SECONDS - START))); echo $((n > 1 ? n : 1)); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$LOGS/gpu.txt" 2>&1

run() {  # run NAME ARGS...: one command, interrupted at the deadline, JSON to $LOGS/NAME.json
  local name=$1
  shift
  timeout -s INT "$(left)" python3 -m fmnist_toolkit "$@" --data-dir "$DATA" --device "$DEVICE" \
    --quiet --json >"$LOGS/$name.json" 2>"$LOGS/$name.err"
  echo "$name: exit $? at $((SECONDS - START)) s"
}

classifiers() {
  run ae-wide-16 ae train --arch wide --name ae-wide-16 --plots "$LOGS/plots"
  run clf-ae-wide-16 clf finetune --encoder ae-wide-16 --plots "$LOGS/plots" &
  run clf-ae-wide-16-ft clf finetune --encoder ae-wide-16 --unfreeze --plots "$LOGS/plots" &
  run clf-ae-wide-16-ft-lr1e-3 clf finetune --encoder ae-wide-16 --unfreeze --lr 1e-3 \
    --encoder-lr 1e-3 --name clf-ae-wide-16-ft-lr1e-3 --plots "$LOGS/plots" &
  run clf-ae-16-ft-augment clf finetune --encoder ae-16 --unfreeze --name clf-ae-16-ft-augment \
    --plots "$LOGS/plots" &
  wait
}

classifiers &
run gan-mlp gan train --arch mlp --name gan-mlp --plots "$LOGS/plots" --sample-every 30 &
# The dcgan defaults (width 64, lr 2e-4, --ema 0.999, 60 epochs), then two candidates to beat them.
run gan-dcgan gan train --arch dcgan --name gan-dcgan --plots "$LOGS/plots" &
run gan-dcgan-e100 gan train --arch dcgan --epochs 100 --name gan-dcgan-e100 --plots "$LOGS/plots" &
run gan-dcgan-w128 gan train --arch dcgan --width 128 --name gan-dcgan-w128 --plots "$LOGS/plots" &
wait
echo "all done at $((SECONDS - START)) s"

# Only the MLP's checkpoint comes back (to finish on a CPU); the others are too large.
find "$FMT_HOME/.checkpoints" -mindepth 1 -maxdepth 1 ! -name gan-mlp -exec rm -rf {} + 2>/dev/null
rm -rf "$FMT_HOME/.locks"
du -sh "$FMT_HOME"/* "$FMT_HOME"/.checkpoints/* 2>/dev/null
tar cf - -C "$FMT_HOME" . | split -b 15M - "$OUT/models.tar.part"
tar czf "$OUT/logs.tar.gz" -C "$LOGS" .
ls -la "$OUT"
