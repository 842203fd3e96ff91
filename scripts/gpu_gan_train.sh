#!/usr/bin/env bash
# Issue #16 on one lent GPU (H100/H200), in about 5 minutes: four GAN recipes trained side by
# side on the one GPU, each for the same time budget, then measured by `fmt gan eval`.
#   gan-dcgan-sn     the candidate new default: hinge loss, spectral norm in D, two learning
#                    rates (G 1e-4, D 4e-4), Adam betas (0, 0.9), --ema 0.999; a snapshot
#                    every $SNAPSHOT_EVERY epochs, each measured too (distance against epochs)
#   gan-dcgan-cond   the same recipe, class-conditional (the generator to bundle)
#   gan-dcgan-cond-bce  conditional with today's dcgan recipe (bce, lr 2e-4, betas 0.5/0.999,
#                    batch norm in D): is hinge + spectral norm what helps?
#   gan-dcgan-base   today's dcgan defaults, the baseline at the same time budget
# Each training stops after the last epoch that fits in $TRAIN_BUDGET seconds (--time-budget)
# and saves as finished; `timeout -s INT` is only the safety net (an interrupted run keeps a
# checkpoint, not a model). Then `fmt gan eval --n $EVAL_N --seed 1 --denoise` (raw and
# denoised rows) on each model, class grids, and a summary.
# Expects the dataset in .data/fashion-mnist and the wheels the machine lacks in .whl/.
# Writes to $OUT: summary.md, summary.json, logs.tar.gz (JSON, stderr, plots, grids),
# models.tar.gz (the four final models, no snapshots), grids/*.png.
# On a CPU, to try it out: DEVICE=cpu TRAIN_BUDGET=60 WIDTH=8 EVAL_N=500 DATA=<a small set>.
set -uo pipefail
source scripts/device_env.sh
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export FMT_HOME=${FMT_HOME:-/tmp/gan-store}
DATA=${DATA:-.data/fashion-mnist}
DEVICE=${DEVICE:-cuda}
TRAIN_BUDGET=${TRAIN_BUDGET:-160}  # seconds of training per recipe, all four at once
EPOCHS=${EPOCHS:-300}              # a cap; the time budget ends training first
WIDTH=${WIDTH:-64}
EVAL_N=${EVAL_N:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-90}       # seconds per evaluation
SNAPSHOT_EVERY=${SNAPSHOT_EVERY:-10}
LOGS=/tmp/gan-logs
rm -rf "$LOGS" "$FMT_HOME"
mkdir -p "$LOGS/plots" "$OUT/grids" "$FMT_HOME"
START=$SECONDS
stamp() { echo "[$((SECONDS - START)) s] $*" | tee -a "$LOGS/run.log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$LOGS/gpu.txt" 2>&1
stamp "start on $DEVICE: budget ${TRAIN_BUDGET} s a recipe, width $WIDTH, eval N $EVAL_N"

train() {  # train NAME ARGS...: one `fmt gan train`, JSON to $LOGS/NAME.json
  local name=$1
  shift
  timeout -s INT $((TRAIN_BUDGET + 90)) python3 -m fmnist_toolkit gan train --arch dcgan \
    --name "$name" --width "$WIDTH" --epochs "$EPOCHS" --time-budget "$TRAIN_BUDGET" \
    --plots "$LOGS/plots" --sample-every 10 --data-dir "$DATA" --device "$DEVICE" --quiet \
    --json "$@" >"$LOGS/$name.json" 2>"$LOGS/$name.err"
  stamp "$name: exit $?"
}

IMPROVED=(--loss hinge --spectral-norm --lr 1e-4 --d-lr 4e-4 --beta1 0 --beta2 0.9 --ema 0.999)
train gan-dcgan-sn "${IMPROVED[@]}" --snapshot-every "$SNAPSHOT_EVERY" &
train gan-dcgan-cond "${IMPROVED[@]}" --conditional &
train gan-dcgan-cond-bce --conditional &
train gan-dcgan-base &
wait
stamp "training done"

evaluate() {  # evaluate NAME [--denoise]: `fmt gan eval` JSON to $LOGS/eval-NAME.json
  local name=$1
  shift
  timeout "$EVAL_LIMIT" python3 -m fmnist_toolkit gan eval --model "$name" --n "$EVAL_N" \
    --seed 1 --data-dir "$DATA" --device "$DEVICE" --json "$@" \
    >"$LOGS/eval-$name.json" 2>"$LOGS/eval-$name.err"
  stamp "eval $name: exit $?"
}
finals=(gan-dcgan-sn gan-dcgan-cond gan-dcgan-cond-bce gan-dcgan-base)
for name in "${finals[@]}"; do
  evaluate "$name" --denoise &
done
# The snapshots, in four lanes beside the four final evaluations.
mapfile -t snapshots < <(cd "$FMT_HOME" && ls -d gan-dcgan-sn-e* 2>/dev/null)
for lane in 0 1 2 3; do
  (
    for index in "${!snapshots[@]}"; do
      if [ $((index % 4)) -eq "$lane" ]; then evaluate "${snapshots[$index]}"; fi
    done
  ) &
done
wait
stamp "evaluations done"

for name in "${finals[@]}"; do
  [ -d "$FMT_HOME/$name" ] || continue
  case $name in
  *cond*) grid=(--class all --n 80) ;;
  *) grid=(--n 64) ;;
  esac
  python3 -m fmnist_toolkit gan sample --model "$name" "${grid[@]}" --seed 1 \
    --device "$DEVICE" "$OUT/grids/$name.png" >>"$LOGS/grids.log" 2>&1 &
  python3 -m fmnist_toolkit gan sample --model "$name" "${grid[@]}" --seed 1 --denoise \
    --side-by-side --device "$DEVICE" "$OUT/grids/$name-denoised.png" >>"$LOGS/grids.log" 2>&1 &
done
wait
stamp "grids done"

python3 - "$LOGS" "$OUT" <<'EOF'
"""summary.json and summary.md from the training and evaluation JSON."""
import json
import sys
from pathlib import Path

logs, out = Path(sys.argv[1]), Path(sys.argv[2])


def read(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


summary = {"trainings": {}, "evaluations": {}}
for path in sorted(logs.glob("gan-*.json")):
    summary["trainings"][path.stem] = read(path)
for path in sorted(logs.glob("eval-*.json")):
    summary["evaluations"][path.stem[len("eval-"):]] = read(path)
(out / "summary.json").write_text(json.dumps(summary, indent=2))

lines = ["| model | epochs | seconds | images | N | distance | class entropy | mean class share | lowest class share |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
for name, report in summary["evaluations"].items():
    trained = summary["trainings"].get(name) or {}
    if report is None:
        lines.append(f"| {name} | {trained.get('epochs', '?')} | | failed: see eval-{name}.err | | | | | |")
        continue
    for row in report["rows"]:
        shares = row.get("class_shares")
        lowest = f"{min(shares.values()):.1%} ({min(shares, key=shares.get)})" if shares else ""
        mean = f"{row['mean_class_share']:.1%}" if shares else ""
        lines.append(
            f"| {name} | {trained.get('epochs', '')} | {trained.get('seconds', '')} | {row['images']} | "
            f"{row['n']} | {row['frechet_distance']:.2f} | {row['class_entropy']:.3f} | {mean} | {lowest} |"
        )
for name, report in summary["evaluations"].items():
    for row in (report or {}).get("rows", []):
        if row.get("class_shares"):
            shares = " ".join(f"{k}: {v:.1%}" for k, v in row["class_shares"].items())
            lines.append(f"\n{name}, {row['images']}: {shares}")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF

# The four final models come back (a few MB each); snapshots and checkpoints stay.
rm -rf /tmp/gan-finals && mkdir -p /tmp/gan-finals
for name in "${finals[@]}"; do
  [ -d "$FMT_HOME/$name" ] && cp -r "$FMT_HOME/$name" /tmp/gan-finals/
done
tar czf "$OUT/models.tar.gz" -C /tmp/gan-finals .
rm -rf /tmp/gan-finals
tar czf "$OUT/logs.tar.gz" -C "$LOGS" .
stamp "all done"
