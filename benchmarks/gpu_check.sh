#!/usr/bin/env bash
# GPU check, on a CUDA machine, in one go (under 8 minutes; each stage has its own time limit, and a
# stage that fails is reported and the next one still runs):
#   1. the unit tests that need CUDA (pytest -m cuda),
#   2. a bf16-mixed training smoke run of the g2g preset (g2g train; stops with one line on NaN/Inf),
#   3. g2g bench of the 128 px cyclefunit and the 224 px cyclefunit-id presets (bf16-mixed, random data,
#      random frozen weights where no weight files are present), then the 128 px cyclefunit step at a
#      batch that fills the GPU (the MFU target of docs/performance.md); each bench line also carries its time
#      split (convolutions' and matmuls' share of the step and their own share of the peak: the ceiling).
# With SWEEP=1, the 128 px cyclefunit step channels-first at batch 64 and 256, its profiler table and the
# same step compiled (last: compilation is the slowest stage; COMPILE_LIMIT seconds, default 150).
# Results: $OUT/bench.jsonl (one `g2g bench` result per line), $OUT/log.txt, $OUT/ops-*.txt; scratch
# files (checkpoints, traces) go to a temporary folder, so $OUT holds only those.
# Usage: benchmarks/gpu_check.sh            (PY=python, OUT=folder, SWEEP=1 to override)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-outputs/gpu_check}
SWEEP=${SWEEP:-0}
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
WORK=$(mktemp -d)
exec > >(tee -a "$OUT/log.txt") 2>&1
start=$(date +%s)
failed=()
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }
# run NAME SECONDS COMMAND...: one stage under its own time limit; a failure is noted, not fatal
run() {
    local name=$1 limit=$2
    shift 2
    stage "$name"
    timeout -k 5 "$limit" "$@"   # -k: compile workers can outlive a plain TERM
    local rc=$?
    if [ $rc -ne 0 ]; then echo "!! $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)')"; failed+=("$name"); fi
}
nbench=0
bench() {  # bench SECONDS PRESET SIZE BATCH [more g2g bench options]; each profiles 2 more steps (its time split)
    local limit=$1 preset=$2 size=$3 batch=$4
    shift 4
    nbench=$((nbench + 1))
    run "bench $preset ${size} px batch $batch $*" "$limit" "$PY" -m g2g.cli bench --preset "$preset" \
        --size "$size" --batch "$batch" --device cuda --steps 20 --warmup 5 --out "$OUT/bench.jsonl" \
        --profile "$WORK/prof-$nbench" "$@"
}

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "gpu_check: no CUDA device here")' || exit 1
"$PY" -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__, torch.cuda.get_device_name())'
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv,noheader || true

run "1. CUDA unit tests" 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda.py

run "2. bf16-mixed training smoke run (g2g preset, 60 steps)" 150 "$PY" -m g2g.cli train --preset g2g \
    --trainer.accelerator gpu --trainer.devices 1 --trainer.precision bf16-mixed --trainer.max_steps 60 \
    --trainer.max_time null --trainer.logger false --data.steps_per_epoch 30 --trainer.default_root_dir "$WORK/train"

stage "3. g2g bench"
bench 100 cyclefunit 128 8
bench 100 cyclefunit-id 224 8
bench 100 cyclefunit 128 64
if [ "$SWEEP" = 1 ]; then
    CF="--set model.channels_last=false"
    bench 100 cyclefunit 128 64 $CF
    bench 100 cyclefunit 128 256 $CF
    bench 100 cyclefunit 128 64 $CF --steps 5 --profile "$WORK/prof"
    [ -f "$WORK/prof/ops.txt" ] && cp "$WORK/prof/ops.txt" "$OUT/ops-cyclefunit-128px-b64-cuda.txt"
    bench "${COMPILE_LIMIT:-150}" cyclefunit 128 64 $CF --compile --warmup 8
fi

stage "done: ${#failed[@]} stage(s) failed${failed:+: ${failed[*]}}; results in $OUT"
rm -rf "$WORK"
[ ${#failed[@]} -eq 0 ]
