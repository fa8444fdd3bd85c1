#!/usr/bin/env bash
# CPU cost per request, side by side: each server runs at the same time as a base server,
# both pinned to CPU 0, with a wrk for each on CPU 1, so both share the VM's swings. Each
# process's CPU time over the run is read from /proc, and the figure is the ratio of requests
# per CPU second (the inverse ratio of CPU per request). The ratio of the bare rates is
# printed too, but it is not that figure: the kernel shares a CPU between threads, not
# processes, so a server with two busy threads (edge-node's front and isolate) gets more
# than half of CPU 0 (58% against plain hyper, measured), and its rate ratio flatters it.
#
# Two handlers, the same code in every server:
#   hello  GET, "Hello, world!" (benches/hello-fn); the base is a plain hyper server
#   json   POST of a 1 KB order read with request.json(), totalled, answered with
#          Response.json (benches/json-fn, benches/json-order.lua); the base is Deno.serve
#          running the same handler
# Servers, each against the base:
#   edge-node   the function through `edge-node serve` (as a node runs by default: CPU
#               accounting, the invocation summary in the function's log, metrics)
#   front       (hello) edge-node's HTTP front alone: requests for a path no route matches,
#               answered 404 without reaching an isolate
#   deno        (hello) Deno.serve
#   bun         Bun.serve (@oven/bun-linux-x64 from npm)
#   node        Node's http
#   workerd     workerd (from npm)
#
# Usage: benches/efficiency.sh [ROUNDS] [hello|json]   (3 rounds, hello; DURATION=6s,
# CONNECTIONS=50; PROFILE=dist for edge-node as shipped, see benches/common.sh). Prints each
# round, then the median per server and edge-node's over Deno's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
mode="${2:-hello}"
DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-50}"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
comparison_setup
peers_setup

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
handler_setup "$mode" || { echo "usage: $0 [ROUNDS] [hello|json]" >&2; exit 64; }
module="$fn/src/index.js"

# edge-node as a node: the function in a functions folder, served by `serve` (node_toml).
node_toml "$scratch/node" 8194 '["/*"]'
# The front alone: the function on a path the load never asks for.
node_toml "$scratch/front" 8194 '["/elsewhere/*"]'
# workerd: its config embeds the module, by a path relative to the config.
mkdir -p "$scratch/workerd"
cp "$module" "$scratch/workerd/worker.js"
sed -e "s|MODULE|worker.js|" -e "s|PORT|8194|" benches/workerd.capnp.in \
  >"$scratch/workerd/config.capnp"
sed -e "s|MODULE|worker.js|" -e "s|PORT|8190|" benches/workerd.capnp.in \
  >"$scratch/workerd/base.capnp"

if [ "$mode" = hello ]; then
  base=("$target/hyper-hello" 127.0.0.1:8190)
  base_name="plain hyper"
  node_server=(node benches/node-hello.mjs 8194)
else
  base=("$deno_bin" run --allow-net --allow-read benches/deno-serve.js "$module" 8190)
  base_name="Deno.serve"
  node_server=(node benches/node-json.mjs 8194)
fi

# Runs the base on 8190 and the server on 8194 at once; prints "NAME RATIO". The server is
# up once READY_PATH answers (a GET: any answer will do for the JSON handler).
pair() { # name ready_path command...
  local name="$1" ready="$2"; shift 2
  local data="$scratch/data-$name"
  mkdir -p "$data"
  taskset -c 0 "${base[@]}" >/dev/null 2>&1 &
  local b=$!
  TMPDIR="$data" EDGE_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
  local server=$!
  wait_up 8190 / && wait_up 8194 "$ready"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "${wrk_script[@]}" http://127.0.0.1:8190/ >/dev/null &
  local w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "${wrk_script[@]}" http://127.0.0.1:8194/ >/dev/null
  wait "$w"
  local cpu_b0 cpu_s0 cpu_b1 cpu_s1
  cpu_b0=$(cpu_ticks "$b") cpu_s0=$(cpu_ticks "$server")
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${wrk_script[@]}" \
    http://127.0.0.1:8190/ >"$scratch/base.txt" &
  w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "${wrk_script[@]}" \
    http://127.0.0.1:8194/ >"$scratch/server.txt"
  wait "$w"
  cpu_b1=$(cpu_ticks "$b") cpu_s1=$(cpu_ticks "$server")
  kill "$b" "$server"
  wait "$b" "$server" 2>/dev/null || true
  local a s
  a=$(awk '/requests in/ {print $1}' "$scratch/base.txt")
  s=$(awk '/requests in/ {print $1}' "$scratch/server.txt")
  if [ "$name" != front ] && grep -q "Non-2xx" "$scratch/server.txt"; then
    echo "$name answered errors: $(grep Non-2xx "$scratch/server.txt")" >&2
  fi
  awk -v n="$name" -v a="$a" -v b="$s" -v ca=$((cpu_b1 - cpu_b0)) -v cb=$((cpu_s1 - cpu_s0)) \
    -v base="$base_name" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      ratio = (b / cb) / (a / ca)
      printf "%-10s %s %8d req in %.2f CPU s, %8d req in %.2f CPU s: rates %.3f, per CPU %.3f\n",
        n, base, a, ca / hz, b, cb / hz, b / a, ratio > "/dev/stderr"
      printf "%s %.3f\n", n, ratio }'
}

# A process's CPU time so far (user and system, all its threads), in clock ticks.
results=$(
  for _ in $(seq 1 "$rounds"); do
    pair edge-node / "$edge_node" serve --config "$scratch/node/node.toml"
    if [ "$mode" = hello ]; then
      pair front /elsewhere/ "$edge_node" serve --config "$scratch/front/node.toml"
      pair deno / "$deno_bin" run --allow-net --allow-read benches/deno-serve.js "$module" 8194
    fi
    pair bun / "$bun_bin" benches/bun-serve.js "$module" 8194
    pair node / "${node_server[@]}"
    pair workerd / "$workerd_bin" serve "$scratch/workerd/config.capnp"
  done
)
echo "$mode: side by side with $base_name on CPU 0, wrk -t1 -c$CONNECTIONS -d$DURATION each on CPU 1;"
echo "median of $rounds rounds of requests per CPU second / the base's (= the base's CPU per request / the server's)"
medians=$(echo "$results" | sort -k1,1 -k2,2n | awk '
  { v[$1] = v[$1] " " $2; n[$1]++ }
  END {
    for (k in v) {
      split(substr(v[k], 2), xs, " ")
      printf "%-10s %.3f\n", k, xs[int((n[k] + 1) / 2)]
    }
  }' | sort)
echo "$medians"
if [ "$mode" = hello ]; then
  echo "$medians" | awk '$1 == "edge-node" { e = $2 } $1 == "deno" { d = $2 }
    END { printf "edge-node / deno: %.3f\n", e / d }'
else
  echo "$medians" | awk '$1 == "edge-node" { printf "edge-node / deno: %.3f\n", $2 }'
fi
