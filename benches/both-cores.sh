#!/usr/bin/env bash
# Both cores: edge-node (`serve`, one front thread per core) and Deno (`deno serve
# --parallel`, one isolate per core), each alone and unpinned, with wrk (2 threads, 100
# connections) sharing the same two cores. Prints requests per second and p99 latency; for
# edge-node with the function held to one isolate (one isolate thread) and allowed two.
#
# Usage: benches/both-cores.sh [hello|json]   (DURATION=8s)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-hello}"
DURATION="${DURATION:-8s}"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
comparison_setup

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
handler_setup "$mode" || { echo "usage: $0 [hello|json]" >&2; exit 64; }

# A node serving the function (node_toml), its isolates limited to `isolates`; concurrency 32
# so that 100 connections need more than one isolate when two are allowed.
pooled_node() { # dir isolates
  node_toml "$1" 8194
  printf '[pool]\nconcurrency = 32\nmax_isolates_per_function = %s\n' "$2" >>"$1/node.toml"
}
pooled_node "$scratch/one" 1
pooled_node "$scratch/two" 2

run() { # name command...
  local name="$1"; shift
  EDGE_LOG=warn "$@" >/dev/null 2>&1 &
  local server=$!
  wait_up 8194 /
  wrk -t2 -c100 -d2s "${wrk_script[@]}" http://127.0.0.1:8194/ >/dev/null
  wrk -t2 -c100 -d"$DURATION" --latency "${wrk_script[@]}" http://127.0.0.1:8194/ >"$scratch/out.txt"
  kill "$server"
  wait "$server" 2>/dev/null || true
  awk -v n="$name" '/Requests\/sec/ { r = $2 } /^ +99%/ { p = $2 }
    END { printf "%-28s %9.0f req/s, p99 %s\n", n, r, p }' "$scratch/out.txt"
}

echo "$mode: unpinned on both cores, wrk -t2 -c100 -d$DURATION beside them"
run "edge-node, one isolate" "$edge_node" serve --config "$scratch/one/node.toml"
run "edge-node, up to two" "$edge_node" serve --config "$scratch/two/node.toml"
run "deno serve --parallel" "$deno_bin" serve --parallel --host 127.0.0.1 --port 8194 \
  "$fn/src/index.js"
