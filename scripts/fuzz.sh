#!/usr/bin/env bash
# Builds a fuzz target with clang (libFuzzer + ASan + UBSan) in build-fuzz/ and runs it.
#
#   scripts/fuzz.sh [SECONDS]          fuzz the .npy parser for SECONDS (default 60)
#   scripts/fuzz.sh SECONDS onnx       fuzz model loading (seeded with the real models when
#                                      scripts/fetch_models.sh has fetched them)
#   scripts/fuzz.sh SECONDS server     fuzz the remote device's message handling
#                                      (fuzz/fuzz_server.cc: hello, load, negotiate, run)
#
# New interesting inputs go to build-fuzz/corpus-npy (kept between runs); fuzz/seeds/npy holds
# small valid files to start from. Exits non-zero when the fuzzer finds a crash, leak, timeout
# or sanitizer report; the input that triggered it is saved as build-fuzz/artifacts/<kind>-<sha>
# and can be replayed with: build-fuzz/fuzz_npy build-fuzz/artifacts/<file>
set -euo pipefail

seconds=${1:-60}
target=${2:-npy}
cd "$(dirname "$0")/.."

if [[ $target == server ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDYNAPREC_FUZZ=ON -DDYNAPREC_TESTS=OFF -DDYNAPREC_BENCHMARKS=OFF >/dev/null
  cmake --build build-fuzz --target fuzz_server
  mkdir -p build-fuzz/corpus-server build-fuzz/artifacts
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  build-fuzz/fuzz_server -max_total_time="$seconds" -max_len=65536 -timeout=20 \
    -rss_limit_mb=4096 -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 \
    build-fuzz/corpus-server
  echo "fuzz.sh: no findings in ${seconds}s (server)"
  exit 0
fi

if [[ $target == onnx ]]; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DDYNAPREC_FUZZ=ON -DDYNAPREC_TESTS=OFF -DDYNAPREC_BENCHMARKS=OFF >/dev/null
  cmake --build build-fuzz --target fuzz_onnx
  mkdir -p build-fuzz/corpus-onnx build-fuzz/artifacts
  models=$(bash scripts/fetch_models.sh 2>/dev/null || true)
  seeds=()
  [[ -f $models/ch_ppocr_mobile_v2.0_cls_infer.onnx ]] && seeds=("$models")
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
  build-fuzz/fuzz_onnx -max_total_time="$seconds" -max_len=1048576 -timeout=20 \
    -rss_limit_mb=4096 -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 \
    build-fuzz/corpus-onnx "${seeds[@]}"
  echo "fuzz.sh: no findings in ${seconds}s (onnx)"
  exit 0
fi

CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDYNAPREC_FUZZ=ON -DDYNAPREC_TESTS=OFF -DDYNAPREC_BENCHMARKS=OFF >/dev/null
cmake --build build-fuzz --target fuzz_npy

mkdir -p build-fuzz/corpus-npy build-fuzz/artifacts

# Tokens of the header grammar help the fuzzer reach past the dict parser.
cat >build-fuzz/npy.dict <<'EOF'
"\x93NUMPY"
"\x93NUMPY\x01\x00"
"\x93NUMPY\x02\x00"
"\x93NUMPY\x03\x00"
"'descr'"
"'fortran_order'"
"'shape'"
"\"descr\""
"True"
"False"
"'<f4'"
"'<f2'"
"'<f8'"
"'|i1'"
"'<i8'"
"'|b1'"
"'>f4'"
"(0,)"
"(2, 3)"
"()"
", }"
"\x0a"
EOF

# The CMake fuzz flags leave UBSan checks recoverable: make any report fatal so it counts.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# libFuzzer exits non-zero on any finding; `set -e` passes that on.
build-fuzz/fuzz_npy -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -dict=build-fuzz/npy.dict -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 \
  build-fuzz/corpus-npy fuzz/seeds/npy
echo "fuzz.sh: no findings in ${seconds}s"
