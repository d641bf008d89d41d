#!/usr/bin/env bash
# Builds (if needed) and runs dynaprec_conformance: the ONNX backend node tests of Debian's
# libonnx-testdata through the importer and the executor at fp32.
#
#   scripts/conformance.sh [--build-dir DIR] [dynaprec_conformance args: --filter S --verbose ...]
#
# BUILD_DIR (default build) is configured with CMake/Ninja in Release if it has no build files.
# Exit status: the runner's (1 if any test failed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
if [[ "${1:-}" == "--build-dir" ]]; then
  build="$2"
  shift 2
fi
data=/usr/share/libonnx-testdata/data/node
if [[ ! -d "$data" ]]; then
  echo "conformance.sh: $data not found (install libonnx-testdata)" >&2
  exit 2
fi
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDYNAPREC_BENCHMARKS=OFF
fi
cmake --build "$build" --target dynaprec_conformance -j "${JOBS:-2}"
exec "$build/dynaprec_conformance" --data "$data" \
  --exclusions "$root/tools/conformance/exclusions.txt" "$@"
