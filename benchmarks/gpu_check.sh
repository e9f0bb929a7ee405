#!/usr/bin/env bash
# `make gpu-check`: correctness and timings of the Triton backend on a CUDA machine -> one JSON.
#
# Uses the python that already has torch and triton (PYTHON, default python3); semicrf is put
# on PYTHONPATH (nothing is installed into that environment, torch is never reinstalled).
# flash-semicrf 0.2.0 is measured against when it can be installed into a throw-away folder
# (pip --target, --no-deps): from FLASH_SEMICRF_WHEEL if set, else from PyPI; set
# SKIP_FLASH=1 to leave it out. Extra arguments (or GPU_CHECK_ARGS) go to gpu_check.py, e.g.
# a CPU rehearsal:
#   TRITON_INTERPRET=1 bash benchmarks/gpu_check.sh --device cpu --batch 2 --length 40 --max-len 8
# The JSON goes to --out, default $OUT/gpu_check.json when OUT is set, else ./gpu_check.json.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
FLASH_DIR=${FLASH_DIR:-${TMPDIR:-/tmp}/semicrf-flash-semicrf-0.2.0}
FLASH_ARGS=()
if [ "${SKIP_FLASH:-0}" = 1 ]; then
  FLASH_ARGS=(--flash-skip-reason "SKIP_FLASH=1")
elif [ -d "$FLASH_DIR/flash_semicrf" ]; then
  FLASH_ARGS=(--flash-path "$FLASH_DIR")
else
  # `make gpu-wheels` downloads the wheel into .wheels/ (git-ignored) on a machine with PyPI;
  # carry that folder to the GPU machine, which cannot reach PyPI.
  LOCAL_WHEEL=$(ls "$ROOT"/.wheels/flash_semicrf-0.2.0-*.whl 2>/dev/null | head -n 1)
  SRC=${FLASH_SEMICRF_WHEEL:-${LOCAL_WHEEL:-flash-semicrf==0.2.0}}
  if timeout 45 "$PY" -m pip install --quiet --no-deps --disable-pip-version-check --no-input \
      --timeout 10 --retries 1 --target "$FLASH_DIR" "$SRC" >&2; then
    FLASH_ARGS=(--flash-path "$FLASH_DIR")
  else
    echo "gpu-check: could not install flash-semicrf ($SRC); timing without it" >&2
    FLASH_ARGS=(--flash-skip-reason "pip install of $SRC failed (offline? set FLASH_SEMICRF_WHEEL)")
  fi
fi
# shellcheck disable=SC2086
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "${FLASH_ARGS[@]}" ${GPU_CHECK_ARGS:-} "$@"
