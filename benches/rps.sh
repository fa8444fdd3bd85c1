#!/usr/bin/env bash
# Warm hello-world requests per second, one run, four servers with the same handler:
# edge-node (the function in benches/hello-fn), a plain hyper server, Deno.serve and Node's
# http. Servers are pinned to CPU 0 and wrk to CPU 1; results print as a table with ratios
# to plain hyper.
#
# Usage: benches/rps.sh            (DURATION=10s CONNECTIONS=50 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-50}"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
comparison_setup

measure() { # name port command...
  local name="$1" port="$2"; shift 2
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "port $port already answers (a server left running?); not measuring $name" >&2
    exit 1
  fi
  EDGE_LOG=warn taskset -c 0 "$@" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null # warm up
  local rps
  rps=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name $rps"
}

results=$(
  measure hyper 8090 "$target/hyper-hello" 127.0.0.1:8090
  measure edge-node 8091 "$edge_node" dev benches/hello-fn --listen 127.0.0.1:8091
  measure deno 8093 "$deno_bin" run --allow-net benches/deno-hello.js 8093
  measure node 8092 node benches/node-hello.mjs 8092
)
echo "$results" | awk -v d="$DURATION" -v c="$CONNECTIONS" '
  { name[NR] = $1; rps[NR] = $2; if ($1 == "hyper") base = $2 }
  END {
    printf "wrk -t1 -c%s -d%s, server on CPU 0, wrk on CPU 1\n", c, d
    printf "%-10s %12s %10s\n", "server", "req/s", "vs hyper"
    for (i = 1; i <= NR; i++) printf "%-10s %12.0f %10.2f\n", name[i], rps[i], rps[i] / base
  }'
