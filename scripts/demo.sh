#!/usr/bin/env bash
# Builds dynaprec and runs the main job: what the device can do (`dynaprec info`), a
# quantization example through every format, the conversion throughput next to a plain copy, and
# then `dynaprec demo`: the real text recognizer (fetched into the model cache by
# scripts/fetch_models.sh) reading a stream of rendered text lines at run-time precision, with
# the HTML report written to dynaprec-demo.html (about 1-2 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build >/dev/null
bin=build/dynaprec

echo "== dynaprec info"
$bin info

# A float32 .npy with 8 values, written byte by byte (no Python or NumPy needed).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
header="{'descr': '<f4', 'fortran_order': False, 'shape': (8,), }"
pad=$((128 - 10 - ${#header} - 1))
{
  printf '\x93NUMPY\x01\x00'
  printf "\\x$(printf %02x $((${#header} + pad + 1)))\\x00"
  printf '%s%*s\n' "$header" "$pad" ""
  # 0.1, -1.5, 3.14159, 300, -0.007, 1000, 1e-5, 65536 as little-endian float32
  printf '\xcd\xcc\xcc\x3d\x00\x00\xc0\xbf\xd0\x0f\x49\x40\x00\x00\x96\x43'
  printf '\xe3\x5e\xe5\xbb\x00\x00\x7a\x44\xac\xc5\x27\x37\x00\x00\x80\x47'
} >"$tmp/x.npy"

echo
echo "== dynaprec quantize: x = 0.1 -1.5 3.14159 300 -0.007 1000 1e-5 65536"
for f in fp32 bf16 fp16 fp8e4m3 fp8e5m2 int8 int4; do
  $bin quantize --format "$f" "$tmp/x.npy" "$tmp/y.npy"
  printf '%-8s' "$f"
  od -A n -t f4 -j 128 -w32 -v "$tmp/y.npy" | tr -s ' ' | sed 's/^ //'
done

echo
echo "== dynaprec bench convert (64 MiB, 1 thread)"
for f in bf16 fp8e4m3 int4; do
  $bin bench convert --format "$f" --mib 64 --reps 3
done

echo
echo "== dynaprec demo"
bash scripts/fetch_models.sh >/dev/null
$bin demo --html dynaprec-demo.html
