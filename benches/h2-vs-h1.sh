#!/usr/bin/env bash
# HTTP/2 over TLS vs HTTP/1.1 over TLS, requests per second for hello world, with h2load.
# edge-node (dev --tls, benches/hello-fn) on CPU 0, h2load on CPU 1.
#
# Usage: benches/h2-vs-h1.sh        (REQUESTS=50000 CLIENTS=50 STREAMS=10 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
REQUESTS="${REQUESTS:-50000}"
CLIENTS="${CLIENTS:-50}"
STREAMS="${STREAMS:-10}"
command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client; }
scripts/cargo build --release -q -p edge-node
target="${CARGO_TARGET_DIR:-$root/target}/release"
EDGE_LOG=warn taskset -c 0 "$target/edge-node" dev benches/hello-fn --tls --listen 127.0.0.1:8443 >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do curl -fsk https://127.0.0.1:8443/ >/dev/null 2>&1 && break; sleep 0.05; done
rate() { taskset -c 1 h2load "$@" | awk '/^finished in/ {print $4}'; }
h2load -n 2000 -c 10 https://127.0.0.1:8443/ >/dev/null # warm up
h2=$(rate -n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" https://127.0.0.1:8443/)
h1=$(rate --h1 -n "$REQUESTS" -c "$CLIENTS" https://127.0.0.1:8443/)
echo "h2load -n $REQUESTS -c $CLIENTS (HTTP/2: -m $STREAMS streams per connection), TLS, server on CPU 0"
echo "HTTP/2 over TLS:   $h2 req/s"
echo "HTTP/1.1 over TLS: $h1 req/s"
awk -v a="$h2" -v b="$h1" 'BEGIN { printf "ratio h2/h1: %.2f\n", a / b }'
