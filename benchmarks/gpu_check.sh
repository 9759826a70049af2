#!/usr/bin/env bash
# The GPU figures of docs/BENCHMARKS.md in one run of under 8 minutes on one GPU (no Blender needed):
#   1. train-step throughput and MFU of vae-paper and diffusion-paper in bf16, eager and torch.compile;
#   2. a 30-frame `drive` of a 50,000-vertex mesh with paper-size models;
#   3. the learning benchmark for 10 minutes at a larger configuration, on a `learn` output rendered
#      elsewhere (LEARN_DATA, a finished `driveanymesh run learn` folder), when one is given.
# Usage: LEARN_DATA=runs/learn/data bash benchmarks/gpu_check.sh   (prints every figure; OUT=/tmp/gpu_check)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo "== 1. training step, paper sizes, bf16 (eager, then compiled)"
timeout 240 "$PY" benchmarks/train_step.py --device cuda --compile --vae-batch 72 --diffusion-batch 32 \
    --steps 10 --warmup 3 | tee "$OUT/train_step.txt"
echo "== 2. drive: 30 frames, 50,000 vertices, paper-size untrained models"
timeout 120 "$PY" benchmarks/drive.py --untrained --frames 30 --vertices 50000 | tee "$OUT/drive.txt"
if [ -n "${LEARN_DATA:-}" ]; then
    echo "== 3. learning benchmark, 10 minutes, larger configuration (vae-learn-gpu, diffusion-learn-gpu)"
    timeout 720 "$PY" benchmarks/learning.py --data "$LEARN_DATA" --out "$OUT/learning" --budget-min 10 \
        --vae-config vae-learn-gpu --diffusion-config diffusion-learn-gpu | tee "$OUT/learning.txt"
else
    echo "== 3. learning benchmark: skipped (set LEARN_DATA to a finished learn pipeline output)"
fi
echo "figures in $OUT"
