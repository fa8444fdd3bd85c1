#!/usr/bin/env bash
# The Cache API on hits, side by side: one edge-node serving benches/cache-fn, measured on two
# paths at the same time (the server on CPU 0, a wrk per path on CPU 1), so both share the
# machine's swings. Pairs: `/cached` (answered from caches.default) against `/hello` (hello
# world: the target is at least 0.9 of its rate) and against `/computed` (the same answer
# built every time).
#
# Usage: benches/cache-api.sh [ROUNDS]   (DURATION=6s by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
DURATION="${DURATION:-6s}"
# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
scripts/cargo build --release -q -p edge-node
bin="${CARGO_TARGET_DIR:-$root/target}/release/edge-node"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

pair() { # path-a path-b
  taskset -c 1 wrk -t1 -c50 -d"$DURATION" "http://127.0.0.1:8193$1" >"$scratch/a.txt" &
  local w=$!
  taskset -c 1 wrk -t1 -c50 -d"$DURATION" "http://127.0.0.1:8193$2" >"$scratch/b.txt"
  wait "$w"
  local a b
  a=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/a.txt")
  b=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/b.txt")
  awk -v p="$1" -v q="$2" -v a="$a" -v b="$b" \
    'BEGIN { printf "%s %d req/s, %s %d req/s, %s/%s %.3f\n", p, a, q, b, q, p, b / a }'
}

for _ in $(seq 1 "$rounds"); do
  TMPDIR="$scratch" EDGE_LOG=warn taskset -c 0 "$bin" dev "$root/benches/cache-fn" \
    --listen 127.0.0.1:8193 >/dev/null 2>&1 &
  server=$!
  wait_port 8193 /hello
  curl -fs http://127.0.0.1:8193/cached >/dev/null
  # Warm-up of both paths, then the measured pairs.
  DURATION=2s pair /hello /cached >/dev/null
  pair /hello /cached
  pair /computed /cached
  kill "$server"
  wait "$server" 2>/dev/null || true
done
