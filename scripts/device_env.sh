# Sourced by the scripts run on a lent GPU machine (scripts/gpu_checks.sh,
# scripts/gpu_train.sh): makes $OUT and puts the toolkit and the wheels of .whl/ (the packages
# that machine lacks) on PYTHONPATH.
OUT=${OUT:-/tmp/fmt-gpu-out}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
