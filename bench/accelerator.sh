#!/usr/bin/env bash
# One prepared benchmark run on a GPU/TPU host, within 8 minutes (bench/accelerator.py says
# what it measures). Usage, from anywhere:
#
#   bash bench/accelerator.sh [OUT_DIR]             # accelerator host; needs jax[cuda12] or jax[tpu]
#   bash bench/accelerator.sh --dry-run [OUT_DIR]   # tiny sizes on CPU, one device
#
# Environment: PYTHON (default: python3), BUDGET_S (default 480: the hard limit of the whole
# run; the Python driver plans for BUDGET_S - 30). OUT_DIR defaults to
# bench/out/accelerator-<UTC time>. Writes OUT_DIR/devices.txt, accelerator.json,
# accelerator.md and run.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dry=0
out=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    -h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "accelerator.sh: unknown option $arg" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
out="${out:-bench/out/accelerator-$(date -u +%Y%m%dT%H%M%SZ)}"
budget="${BUDGET_S:-480}"
py="${PYTHON:-python3}"
mkdir -p "$out"

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if command -v nvidia-smi > /dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || true
  else
    echo "nvidia-smi: not found"
  fi
} > "$out/devices.txt"
cat "$out/devices.txt"

args=(--out "$out" --budget-s "$((budget - 30))")
if [ "$dry" = 1 ]; then
  # One CPU device: with 2 simulated devices on a loaded 2-core machine the step's gradient
  # all-reduce once missed XLA:CPU's 40 s rendezvous deadline and aborted the process.
  export JAX_PLATFORMS=cpu
  export XLA_FLAGS="--xla_force_host_platform_device_count=1"
  args+=(--dry-run)
else
  # Do not let JAX grab 75% of the GPU up front: the sections build several steps.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout --kill-after=10 "$budget" "$py" bench/accelerator.py "${args[@]}" 2>&1 | tee "$out/run.log"
status=${PIPESTATUS[0]}
echo "accelerator.sh: exit $status; results in $out (accelerator.md, accelerator.json)"
exit "$status"
