#!/usr/bin/env bash
# WebSockets side by side with Deno's `Deno.upgradeWebSocket` echo: both servers on CPU 0 at
# the same time, the same Rust client (target/release/ws-load, tokio-tungstenite) on CPU 1,
# one per server, so both share the machine's swings.
#   - echoes per second on one socket, and over 1,000 sockets (each sends a 32-byte text and
#     waits for its echo);
#   - memory per open idle socket: on fresh servers, each server's RSS with 2,000 idle sockets
#     open minus its RSS with the first 1,000 open, divided by 1,000 (so what the first
#     sockets warm up, buffers and pools, is left out).
#
# Usage: benches/websocket.sh [ROUNDS]   (DURATION=5 seconds by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rounds="${1:-3}"
SECONDS_EACH="${DURATION:-5}"
# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
comparison_setup
scripts/cargo build --release -q -p benches --bin ws-load
scratch="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$scratch"' EXIT
ulimit -n 65536 2>/dev/null || true

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; } # KiB

hold() { # url: opens 1,000 idle sockets, held until the coprocess's stdin closes
  # shellcheck disable=SC2034
  coproc HOLD { taskset -c 1 "$target/ws-load" "$1" 1000 0 --idle; }
  read -r line <&"${HOLD[0]}"
  [ "$line" = "open" ] || { echo "ws-load did not open its sockets" >&2; exit 1; }
}

idle_kib_per_socket() { # pid url
  local first second
  hold "$2"; local a_in=${HOLD[1]} a_pid=$HOLD_PID
  sleep 1 # let both sides settle after the last handshake
  first=$(rss "$1")
  hold "$2"; local b_in=${HOLD[1]} b_pid=$HOLD_PID
  sleep 1
  second=$(rss "$1")
  exec {a_in}>&- {b_in}>&-
  wait "$a_pid" "$b_pid" 2>/dev/null || true
  awk -v a="$first" -v b="$second" 'BEGIN { printf "%.2f", (b - a) / 1000 }'
}

pair() { # sockets
  taskset -c 1 "$target/ws-load" ws://127.0.0.1:8195/ "$1" "$SECONDS_EACH" >"$scratch/isola.txt" &
  local w=$!
  taskset -c 1 "$target/ws-load" ws://127.0.0.1:8094/ "$1" "$SECONDS_EACH" >"$scratch/deno.txt"
  wait "$w"
  awk -v n="$1" -v a="$(cat "$scratch/isola.txt")" -v d="$(cat "$scratch/deno.txt")" \
    'BEGIN { printf "%d socket(s): edge-node %d/s, Deno %d/s, edge-node/Deno %.3f\n", n, a, d, a / d }'
}

for _ in $(seq 1 "$rounds"); do
  TMPDIR="$scratch" EDGE_LOG=warn taskset -c 0 "$target/edge-node" dev "$root/benches/ws-fn" \
    --listen 127.0.0.1:8195 >/dev/null 2>&1 &
  isola=$!
  taskset -c 0 "$deno_bin" run --allow-net "$root/benches/deno-ws.js" 8094 >/dev/null 2>&1 &
  deno=$!
  wait_port 8195 && wait_port 8094
  # Warm-up: the isolate and both JITs.
  SECONDS_EACH=2 pair 10 >/dev/null
  echo "idle socket: edge-node $(idle_kib_per_socket "$isola" ws://127.0.0.1:8195/) KiB, Deno $(idle_kib_per_socket "$deno" ws://127.0.0.1:8094/) KiB"
  pair 1
  pair 1000
  kill "$isola" "$deno"
  wait "$isola" "$deno" 2>/dev/null || true
done
