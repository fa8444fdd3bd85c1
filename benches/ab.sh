#!/usr/bin/env bash
# Compares two edge-node builds on the rps bench's hello-world function by running them at
# the same time: both servers on CPU 0, a wrk for each on CPU 1. They share the machine's
# swings (this VM's speed changes by tens of percent between runs), so the ratio of their
# requests per second is steadier than two runs one after the other.
#
# Usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]   (DURATION=6s by default)
# Prints each round's req/s and NEW/OLD.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
old="$1" new="$2" rounds="${3:-3}"
DURATION="${DURATION:-6s}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Each server keeps its dev data under its own temporary directory.
mkdir -p "$scratch/old" "$scratch/new"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

for _ in $(seq 1 "$rounds"); do
  TMPDIR="$scratch/old" EDGE_LOG=warn taskset -c 0 "$old" dev "$root/benches/hello-fn" \
    --listen 127.0.0.1:8191 >/dev/null 2>&1 &
  a=$!
  TMPDIR="$scratch/new" EDGE_LOG=warn taskset -c 0 "$new" dev "$root/benches/hello-fn" \
    --listen 127.0.0.1:8192 >/dev/null 2>&1 &
  b=$!
  wait_port 8191 && wait_port 8192
  taskset -c 1 wrk -t1 -c50 -d2s http://127.0.0.1:8191/ >/dev/null &
  w=$!
  taskset -c 1 wrk -t1 -c50 -d2s http://127.0.0.1:8192/ >/dev/null
  wait "$w"
  taskset -c 1 wrk -t1 -c50 -d"$DURATION" http://127.0.0.1:8191/ >"$scratch/old.txt" &
  w=$!
  taskset -c 1 wrk -t1 -c50 -d"$DURATION" http://127.0.0.1:8192/ >"$scratch/new.txt"
  wait "$w"
  kill "$a" "$b"
  wait "$a" "$b" 2>/dev/null || true
  rps_old=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/old.txt")
  rps_new=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/new.txt")
  awk -v a="$rps_old" -v b="$rps_new" \
    'BEGIN { printf "old %d req/s, new %d req/s, new/old %.3f\n", a, b, b / a }'
done
