#!/usr/bin/env bash
# The trainings of issue #17 that need a GPU, in one run on a lent H100 (under 2 minutes: a
# deadline of 105 s after the wheels are installed, then the store is packed):
# latent-16 autoencoders with the one-cycle schedule (the report's architecture, `wide` and
# `residual`), the tuning study that finds the one-cycle recipe, and classifiers with the
# field's tools (one-cycle, label smoothing, cutout, mixup, weight averaging, test-time flips).
# Everything starts at once and runs side by side on the one GPU (each run is launch-bound);
# only the frozen classifiers wait for their autoencoder.
#
#   scripts/gpu_repr_train.sh           on the GPU: .data/fashion-mnist, wheels in .whl/
#   TINY=1 scripts/gpu_repr_train.sh    tries it out on a CPU: a synthetic data set (made by
#                                       tests/conftest.py), 1 epoch each, 2 trials
#   WHAT=left scripts/gpu_repr_train.sh only the runs #17 still lacks (a fine-tuned classifier
#                                       with the tools, residual and longer wide autoencoders
#                                       with their frozen heads), #16's denoising
#                                       autoencoders for the MLP's samples, and the CUDA
#                                       tests: deadline 420 s (LEFT_DEADLINE)
#
# Writes to $OUT: run.log, logs.tar.gz (each command's JSON and stderr, tuning plots) and
# models.tar.gz.part* (the store: finished models, and the checkpoints of runs cut off by the
# deadline, to finish anywhere with `--resume`). A run still going DEADLINE seconds after the
# start is interrupted (SIGINT, like Ctrl-C).
set -uo pipefail
source scripts/device_env.sh
export PYTHONUNBUFFERED=1
export FMT_HOME=/tmp/repr-store OMP_NUM_THREADS=1
LOGS=/tmp/repr-logs
rm -rf "$LOGS" "$FMT_HOME"
mkdir -p "$LOGS" "$FMT_HOME"
START=$SECONDS

if [ "${TINY:-0}" = 1 ]; then
  DATA=/tmp/repr-tiny-data DEVICE=cpu DEADLINE=${DEADLINE:-900}
  python3 -c "from pathlib import Path; from tests.conftest import write_dataset; \
write_dataset(Path('$DATA'), train=512, test=256)"
  AE=1 LONG_AE=1 WIDE=1 RESIDUAL=1 FT=1 FROZEN=1 TRIALS=2 TRIAL_EPOCHS=1
else
  DATA=${DATA:-.data/fashion-mnist} DEVICE=${DEVICE:-cuda} DEADLINE=${DEADLINE:-105}
  AE=60 LONG_AE=100 WIDE=60 RESIDUAL=40 FT=80 FROZEN=50 TRIALS=12 TRIAL_EPOCHS=6
fi
left() { local n=$((DEADLINE - (SECONDS - START))); echo $((n > 1 ? n : 1)); }

run() {  # run NAME ARGS...: one fmt command, interrupted at the deadline, JSON to $LOGS/NAME.json
  local name=$1
  shift
  timeout -s INT "$(left)" python3 -m fmnist_toolkit "$@" --data-dir "$DATA" --device "$DEVICE" \
    --quiet --json >"$LOGS/$name.json" 2>"$LOGS/$name.err"
  local code=$?
  echo "[$((SECONDS - START)) s] $name: exit $code $(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d.update(d.get('trained') or {}); print({k: d[k] for k in ('seconds', 'test_mse', 'val_accuracy', 'test_accuracy', 'best_epoch') if k in d})" "$LOGS/$name.json" 2>/dev/null)"
}

main() {  # every training at once; the log goes to the screen and $OUT/run.log
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
    # The per-batch schedules and the classifier's tools replayed as CUDA graphs match eager
    # steps.
    (
      timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py \
        -k "onecycle or tools" >"$LOGS/pytest-gpu.txt" 2>&1
      echo "gpu tests: $(tail -1 "$LOGS/pytest-gpu.txt")"
    ) &
  fi

  # The field's tools for a classifier (each measured on validation: docs/classifier.md); a
  # frozen head also gets mixup and codes of augmented images, but no test-time flip: on the
  # fixed codes of plain images it cost 7 points of validation accuracy (CPU, 30 epochs).
  TOOLS=(--schedule onecycle --label-smoothing 0.1 --ema 0.999)
  FROZEN_TOOLS=(--lr 3e-3 --mixup 0.2 --augment-codes "${TOOLS[@]}")

  # 1. The fine-tuned classifier on the bundled ae-wide-16 (93.47 % with the report's recipe),
  # with the tools; the longest run, so it starts first...
  run clf-ae-wide-16-ft-tools clf finetune --encoder ae-wide-16 --unfreeze \
    --name clf-ae-wide-16-ft-tools --epochs "$FT" --lr 2e-3 --encoder-lr 2e-3 --cutout 8 \
    --tta-flip "${TOOLS[@]}" &

  # ... and the frozen head on the same encoder with the tools (88.78 % without them).
  run clf-ae-wide-16-tools clf finetune --encoder ae-wide-16 --name clf-ae-wide-16-tools \
    --epochs "$FROZEN" "${FROZEN_TOOLS[@]}" &

  # ... and each tool's share on validation: the frozen head with all the tools but one (without
  # one-cycle: the report's constant 2e-4), and with the test-time flip added; three chains.
  for pair in "onecycle label-smoothing" "mixup ema" "augment-codes tta-flip"; do
    for tool in $pair; do
      args=()
      [ $tool != onecycle ] && args+=(--lr 3e-3 --schedule onecycle)
      [ $tool != label-smoothing ] && args+=(--label-smoothing 0.1)
      [ $tool != mixup ] && args+=(--mixup 0.2)
      [ $tool != ema ] && args+=(--ema 0.999)
      [ $tool != augment-codes ] && args+=(--augment-codes)
      name="ablation-without-$tool"
      [ $tool = tta-flip ] && args+=(--tta-flip) && name=ablation-with-tta-flip
      run "$name" clf finetune --encoder ae-wide-16 --name "$name" --epochs "$FROZEN" "${args[@]}"
    done &
  done

  # 2. The stronger latent-16 autoencoders with one-cycle, each followed by a frozen classifier.
  (
    run ae-wide-16-onecycle ae train --arch wide --name ae-wide-16-onecycle --schedule onecycle \
      --lr 4e-3 --epochs "$WIDE"
    run clf-ae-wide-16-onecycle clf finetune --encoder ae-wide-16-onecycle \
      --name clf-ae-wide-16-onecycle --epochs "$FROZEN" "${FROZEN_TOOLS[@]}"
  ) &
  (
    run ae-residual-16-onecycle ae train --arch residual --name ae-residual-16-onecycle \
      --schedule onecycle --lr 4e-3 --epochs "$RESIDUAL"
    run clf-ae-residual-16-onecycle clf finetune --encoder ae-residual-16-onecycle \
      --name clf-ae-residual-16-onecycle --epochs "$FROZEN" "${FROZEN_TOOLS[@]}"
  ) &

  # 3. The report's architecture with one-cycle (the quick measurement: about 0.0114 at 60
  # epochs), and two candidates for <= 0.0110: 100 epochs, a higher peak (both cheap).
  run ae-16-onecycle ae train --name ae-16-onecycle --schedule onecycle --lr 3e-3 \
    --batch-size 128 --epochs "$AE" &
  run ae-16-onecycle-e100 ae train --name ae-16-onecycle-e100 --schedule onecycle --lr 3e-3 \
    --batch-size 128 --epochs "$LONG_AE" &
  run ae-16-onecycle-lr6e-3 ae train --name ae-16-onecycle-lr6e-3 --schedule onecycle --lr 6e-3 \
    --batch-size 128 --epochs "$AE" &

  # 4. The search that finds such a recipe (docs/tuning.md): the report's space widened by the
  # four schedules (lr then 1e-4..1e-2) and the batch size; its best recipe trained for 60 epochs.
  run tune-onecycle-space ae tune --study onecycle-space --trials "$TRIALS" \
    --epochs "$TRIAL_EPOCHS" --jobs 3 --search schedule --search batch-size --plots "$LOGS/plots" \
    --train-best --best-epochs "$AE" --name ae-16-tuned-onecycle-space &
  wait
  echo "all done at $((SECONDS - START)) s"
}

remaining_runs() {  # WHAT=left: only what issue #17 still lacks (docs/reproduction.md), with a longer deadline
  # The fine-tuned classifier with the tools (target >= 94.5 %; 93.47 % bundled) on the best
  # bundled encoder, ae-wide-16-onecycle, for FT_LEFT and FT_LONG epochs; the longest runs, so
  # they start first.
  for epochs in "$FT_LEFT" "$FT_LONG"; do
    run "clf-ae-wide-16-onecycle-ft-tools-e$epochs" clf finetune --encoder ae-wide-16-onecycle \
      --unfreeze --name "clf-ae-wide-16-onecycle-ft-tools-e$epochs" --epochs "$epochs" \
      --lr 2e-3 --encoder-lr 2e-3 --cutout 8 --tta-flip --schedule onecycle \
      --label-smoothing 0.1 --ema 0.999 &
  done
  # The stronger latent-16 autoencoder (target <= 0.0075; 0.008362 bundled): residual, and the
  # bundled wide recipe run twice as long; each followed by the bundled frozen head's recipe
  # (target >= 90.0 %; 89.90 % bundled).
  HEAD=(--lr 3e-3 --schedule onecycle --label-smoothing 0.1 --mixup 0.2 --ema 0.999 --seed 1)
  for arch_epochs in "residual $RESIDUAL" "wide $LONG_WIDE"; do
    set -- $arch_epochs
    (
      run "ae-$1-16-onecycle-e$2" ae train --arch "$1" --name "ae-$1-16-onecycle-e$2" \
        --schedule onecycle --lr 4e-3 --epochs "$2"
      run "clf-ae-$1-16-onecycle-e$2" clf finetune --encoder "ae-$1-16-onecycle-e$2" \
        --name "clf-ae-$1-16-onecycle-e$2" --epochs "$FROZEN_LEFT" "${HEAD[@]}"
    ) &
  done
  # Issue #16's MLP target (denoised at most 0.6 x raw): the latent-16 autoencoders redraw the
  # MLP's samples closer than the U-Net (0.63 x for ae-wide-16-onecycle at N = 2,000, against
  # 0.72 x), so autoencoders trained to denoise, at latent 16 and 32, are candidates for it.
  for latent in 16 32; do
    run "ae-wide-$latent-denoise-onecycle" ae train --arch wide --objective denoise \
      --latent-dim "$latent" --name "ae-wide-$latent-denoise-onecycle" --schedule onecycle \
      --lr 4e-3 --epochs "$DENOISE_EPOCHS" &
  done
  if [ "$DEVICE" = cuda ]; then  # the CUDA tests, seven sessions of changes since the last GPU
    (
      timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$LOGS/pytest-gpu.txt" 2>&1
      echo "gpu tests: $(tail -1 "$LOGS/pytest-gpu.txt")"
    ) &
  fi
  wait
  echo "all done at $((SECONDS - START)) s"
}

more_runs() {  # WHAT=more: the second round of this session, after the first's results
  # The latent-32 denoising autoencoder brought the MLP's samples to 0.59 x raw (N = 2,000);
  # wider codes change clean images less. A second seed of latent 32, latents 64 and 128, and a
  # residual decoder at latent 32.
  for latent_arch_seed in "32 wide 1" "64 wide 0" "128 wide 0" "32 residual 0"; do
    set -- $latent_arch_seed
    run "ae-$2-$1-denoise-onecycle-s$3" ae train --arch "$2" --objective denoise \
      --latent-dim "$1" --name "ae-$2-$1-denoise-onecycle-s$3" --schedule onecycle \
      --lr 4e-3 --epochs "$DENOISE_EPOCHS" --seed "$3" &
  done
  # residual at latent 16 reached 0.007981 in 40 epochs: 80, with its frozen head
  (
    run ae-residual-16-onecycle-e80 ae train --arch residual --name ae-residual-16-onecycle-e80 \
      --schedule onecycle --lr 4e-3 --epochs 80
    run clf-ae-residual-16-onecycle-e80 clf finetune --encoder ae-residual-16-onecycle-e80 \
      --name clf-ae-residual-16-onecycle-e80 --epochs 60 --lr 3e-3 --schedule onecycle \
      --label-smoothing 0.1 --mixup 0.2 --ema 0.999 --seed 1
  ) &
  wait
  echo "all done at $((SECONDS - START)) s"
}

if [ "${WHAT:-all}" = more ]; then
  DEADLINE=${LEFT_DEADLINE:-330} DENOISE_EPOCHS=${DENOISE_EPOCHS:-30}
  [ "${TINY:-0}" = 1 ] && DENOISE_EPOCHS=1
  more_runs 2>&1 | tee "$OUT/run.log"
elif [ "${WHAT:-all}" = left ]; then
  DEADLINE=${LEFT_DEADLINE:-420}
  FT_LEFT=${FT_LEFT:-40} LONG_WIDE=${LONG_WIDE:-120} FROZEN_LEFT=${FROZEN_LEFT:-60}
  FT_LONG=${FT_LONG:-100} DENOISE_EPOCHS=${DENOISE_EPOCHS:-30}
  [ "${TINY:-0}" = 1 ] && FT_LEFT=1 FT_LONG=2 LONG_WIDE=1 FROZEN_LEFT=1 DENOISE_EPOCHS=1
  remaining_runs 2>&1 | tee "$OUT/run.log"
else
  main 2>&1 | tee "$OUT/run.log"
fi

rm -rf "$FMT_HOME/.locks"
du -sh "$FMT_HOME"/* "$FMT_HOME"/.checkpoints/* 2>/dev/null
# In parts of 15 MB (what comes back from the machine has a size limit per file); join them
# with: cat models.tar.gz.part* | tar xzf -
tar czf - -C "$FMT_HOME" . | split -b 15M - "$OUT/models.tar.gz.part"
tar czf "$OUT/logs.tar.gz" -C "$LOGS" .
