#!/usr/bin/env bash
# HTTP/3 vs HTTP/2 over TLS on one edge-node (release, `dev --tls`, benches/big-fn, CPU 0):
# 1. server CPU time per hello-world request, both protocols at the same request rate
#    (h2load for HTTP/2; aioquic, tests/tools/h3client.py, for HTTP/3; each on CPU 1);
# 2. the wall time of a 16 MiB download: curl --http2 (a new connection each time) vs
#    target/release/h3-get (benches/src/bin/h3_get.rs, quinn + h3, one connection), medians of 9.
#
# Usage: benches/h3-vs-h2.sh        (REQUESTS=4000 RATE=400 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REQUESTS="${REQUESTS:-4000}"
RATE="${RATE:-400}"
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client; }
python3 -c 'import aioquic' 2>/dev/null || python3 -m pip install -q aioquic
scripts/cargo build --release -q -p edge-node -p benches
target="${CARGO_TARGET_DIR:-$root/target}/release"
EDGE_LOG=warn taskset -c 0 "$target/edge-node" dev benches/big-fn --tls --listen 127.0.0.1:8444 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -fsk https://127.0.0.1:8444/ >/dev/null 2>&1 && break; sleep 0.05; done
url=https://127.0.0.1:8444/
client=tests/tools/h3client.py

cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)

# Warm up both paths.
h2load -n 500 -c 1 "$url" >/dev/null
python3 "$client" --insecure --quiet --count 200 "$url" >/dev/null

before=$(cpu)
taskset -c 1 h2load -n "$REQUESTS" -c 1 --rps "$RATE" "$url" | grep -E "^requests:" >&2
h2_ticks=$(( $(cpu) - before ))

before=$(cpu)
taskset -c 1 python3 "$client" --insecure --quiet --count "$REQUESTS" --rate "$RATE" "$url" >&2
h3_ticks=$(( $(cpu) - before ))

awk -v a="$h2_ticks" -v b="$h3_ticks" -v n="$REQUESTS" -v hz="$hz" -v r="$RATE" 'BEGIN {
  printf "server CPU per request at %d req/s, %d requests, one connection each:\n", r, n
  printf "  HTTP/2: %.1f us   HTTP/3: %.1f us   ratio h3/h2: %.2f\n", a / hz / n * 1e6, b / hz / n * 1e6, b / a
}'

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
h2_time=$(for _ in $(seq 1 9); do
  taskset -c 1 curl -sk --http2 -o /dev/null -w "%{time_total}\n" "${url}big"
done | median)
h3_time=$(taskset -c 1 "$target/h3-get" "${url}big" 10 | tail -n 9 | awk '{ print $(NF - 1) }' | median)
awk -v a="$h2_time" -v b="$h3_time" 'BEGIN {
  printf "16 MiB download, median of 9: HTTP/2 %.3f s, HTTP/3 %.3f s, ratio h3/h2 %.2f\n", a, b, b / a
}'
