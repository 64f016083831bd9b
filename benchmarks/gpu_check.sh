#!/usr/bin/env bash
# GPU check, on a CUDA machine, in one go (under 8 minutes; each stage has its own time limit):
#   1. the unit tests that need CUDA (pytest -m cuda),
#   2. a bf16-mixed training smoke run of the g2g preset (g2g train; stops with one line on NaN/Inf),
#   3. g2g bench of the 128 px cyclefunit and the 224 px cyclefunit-id presets (bf16-mixed, random data,
#      random frozen weights where no weight files are present), JSON to $OUT.
# Usage: benchmarks/gpu_check.sh            (PY=path/to/python, OUT=folder to override)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${OUT:-outputs/gpu_check}
export OMP_WAIT_POLICY=PASSIVE PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_check: no CUDA device here")'
"$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())'

stage "1. CUDA unit tests"
timeout 150 "$PY" -m pytest -q -m cuda tests/test_cuda.py

stage "2. bf16-mixed training smoke run (g2g preset, 60 steps)"
timeout 150 "$PY" -m g2g.cli train --preset g2g --trainer.accelerator gpu --trainer.devices 1 \
    --trainer.precision bf16-mixed --trainer.max_steps 60 --trainer.max_time null --trainer.logger false \
    --data.steps_per_epoch 30 --trainer.default_root_dir "$OUT/train"

stage "3. g2g bench: cyclefunit 128 px, cyclefunit-id 224 px"
timeout 100 "$PY" -m g2g.cli bench --preset cyclefunit --size 128 --batch 8 --device cuda \
    --steps 20 --warmup 5 --out "$OUT/cyclefunit-128px-b8-cuda.json"
timeout 100 "$PY" -m g2g.cli bench --preset cyclefunit-id --size 224 --batch 8 --device cuda \
    --steps 20 --warmup 5 --out "$OUT/cyclefunit-id-224px-b8-cuda.json"

stage "done: results in $OUT"
