#!/usr/bin/env bash
# CPU cost per request against plain hyper, side by side: each server runs at the same time
# as the plain hyper server, both pinned to CPU 0, with a wrk for each on CPU 1. The two
# share CPU 0 evenly, so the ratio of their request rates is the ratio of their CPU costs
# per request. Unlike rps.sh, the figure is not capped by what one wrk thread can drive
# (hyper and Deno.serve reach that cap there), and both servers share the VM's swings.
#
# Servers, each against plain hyper:
#   edge-node   benches/hello-fn through `edge-node dev`
#   front       edge-node's HTTP front alone: the same node, requests for a path no route
#               matches, answered 404 (a small JSON body) without reaching an isolate
#   deno        Deno.serve
#   node        Node's http
#
# Usage: benches/efficiency.sh [ROUNDS]   (3 rounds, DURATION=6s, CONNECTIONS=50 by default)
# Prints each round, then the median per server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
DURATION="${DURATION:-6s}"
CONNECTIONS="${CONNECTIONS:-50}"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
comparison_setup

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The front alone: a node serving hello-fn on a path the load never asks for (`dev` would
# route every path to it).
mkdir -p "$scratch/front/functions/hello"
cp -r benches/hello-fn/src "$scratch/front/functions/hello/"
sed 's|^routes = .*|routes = ["/elsewhere/*"]|' benches/hello-fn/edge.toml \
  >"$scratch/front/functions/hello/edge.toml"
cat >"$scratch/front/node.toml" <<'TOML'
version = 1
[http]
listen = ["127.0.0.1:8194"]
[admin]
listen = []
[functions]
dir = "functions"
TOML

# Runs plain hyper on 8190 and the server on 8194 at once; prints "NAME RATIO". The server
# is up once READY_PATH answers.
pair() { # name ready_path command...
  local name="$1" ready="$2"; shift 2
  local data="$scratch/data-$name"
  mkdir -p "$data"
  taskset -c 0 "$target/hyper-hello" 127.0.0.1:8190 >/dev/null 2>&1 &
  local base=$!
  TMPDIR="$data" EDGE_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
  local server=$!
  wait_port 8190 && wait_port 8194 "$ready"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s http://127.0.0.1:8190/ >/dev/null &
  local w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s http://127.0.0.1:8194/ >/dev/null
  wait "$w"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" http://127.0.0.1:8190/ >"$scratch/base.txt" &
  w=$!
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" http://127.0.0.1:8194/ >"$scratch/server.txt"
  wait "$w"
  kill "$base" "$server"
  wait "$base" "$server" 2>/dev/null || true
  local a b
  a=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/base.txt")
  b=$(awk '/Requests\/sec/ {print int($2)}' "$scratch/server.txt")
  awk -v n="$name" -v a="$a" -v b="$b" \
    'BEGIN { printf "%-10s hyper %7d req/s, %7d req/s, ratio %.3f\n", n, a, b, b / a }' >&2
  awk -v n="$name" -v a="$a" -v b="$b" 'BEGIN { printf "%s %.3f\n", n, b / a }'
}

results=$(
  for _ in $(seq 1 "$rounds"); do
    pair edge-node / "$target/edge-node" dev benches/hello-fn --listen 127.0.0.1:8194
    pair front /elsewhere/ "$target/edge-node" serve --config "$scratch/front/node.toml"
    pair deno / "$deno_bin" run --allow-net benches/deno-hello.js 8194
    pair node / node benches/node-hello.mjs 8194
  done
)
echo "side by side with plain hyper on CPU 0, wrk -t1 -c$CONNECTIONS -d$DURATION each on CPU 1;"
echo "median of $rounds rounds (rate / hyper's rate = hyper's CPU per request / the server's)"
echo "$results" | sort -k1,1 -k2,2n | awk '
  { v[$1] = v[$1] " " $2; n[$1]++ }
  END {
    for (k in v) {
      split(substr(v[k], 2), xs, " ")
      printf "%-10s %.3f\n", k, xs[int((n[k] + 1) / 2)]
    }
  }' | sort
