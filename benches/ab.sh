#!/usr/bin/env bash
# Compares two edge-node builds on a function by running them at the same time: both as a
# node runs by default (`serve`), both on CPU 0, a wrk for each on CPU 1. They share the
# machine's swings (this VM's speed changes by tens of percent between runs), so the ratio of
# the two is steadier than two runs one after the other.
#
# Linux shares a CPU between threads, not processes, so a build whose threads are busier gets
# more of CPU 0: besides the rates, each process's CPU time is read from /proc and the ratio
# of requests per CPU second (the inverse ratio of CPU per request) is printed too.
#
# Usage: benches/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [hello|json]
#   (DURATION=6s, CONNECTIONS=50 by default)
# Prints each round's req/s, NEW/OLD of the rates and of requests per CPU second, then the
# medians.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
old="$1" new="$2" rounds="${3:-3}" mode="${4:-hello}"
DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-50}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
case "$mode" in
  hello) fn="$root/benches/hello-fn" wrk_script=() ;;
  json) fn="$root/benches/json-fn" wrk_script=(-s "$root/benches/json-order.lua") ;;
  *) echo "usage: $0 OLD NEW [ROUNDS] [hello|json]" >&2; exit 64 ;;
esac

for _ in $(seq 1 "$rounds"); do
  rm -rf "$scratch/old" "$scratch/new"
  node_toml "$scratch/old" 8191 '["/*"]'
  node_toml "$scratch/new" 8192 '["/*"]'
  mkdir -p "$scratch/old/tmp" "$scratch/new/tmp"
  TMPDIR="$scratch/old/tmp" EDGE_LOG=warn taskset -c 0 "$old" serve \
    --config "$scratch/old/node.toml" >/dev/null 2>&1 &
  a=$!
  TMPDIR="$scratch/new/tmp" EDGE_LOG=warn taskset -c 0 "$new" serve \
    --config "$scratch/new/node.toml" >/dev/null 2>&1 &
  b=$!
  wait_up 8191 / && wait_up 8192 /
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "${wrk_script[@]}" http://127.0.0.1:8191/ >/dev/null &
  w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "${wrk_script[@]}" http://127.0.0.1:8192/ >/dev/null
  wait "$w"
  ticks_a=$(cpu_ticks "$a") ticks_b=$(cpu_ticks "$b")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${wrk_script[@]}" \
    http://127.0.0.1:8191/ >"$scratch/old.txt" &
  w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${wrk_script[@]}" \
    http://127.0.0.1:8192/ >"$scratch/new.txt"
  wait "$w"
  ticks_a=$(($(cpu_ticks "$a") - ticks_a)) ticks_b=$(($(cpu_ticks "$b") - ticks_b))
  kill "$a" "$b"
  wait "$a" "$b" 2>/dev/null || true
  for side in old new; do
    if grep -q "Non-2xx" "$scratch/$side.txt"; then
      echo "$side answered errors: $(grep Non-2xx "$scratch/$side.txt")" >&2
      exit 1
    fi
  done
  n_old=$(awk '/requests in/ {print $1}' "$scratch/old.txt")
  n_new=$(awk '/requests in/ {print $1}' "$scratch/new.txt")
  awk -v a="$n_old" -v b="$n_new" -v ta="$ticks_a" -v tb="$ticks_b" -v d="${DURATION%s}" \
    'BEGIN { printf "old %d req/s, new %d req/s, new/old rate %.3f, per CPU second %.3f\n",
             a / d, b / d, b / a, (b / tb) / (a / ta) }'
done | tee "$scratch/rounds.txt"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf "median of %d rounds: new/old rate %s, per CPU second %s\n" "$rounds" \
  "$(awk '{ print $9 + 0 }' "$scratch/rounds.txt" | median)" \
  "$(awk '{ print $13 }' "$scratch/rounds.txt" | median)"
