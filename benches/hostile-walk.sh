#!/usr/bin/env bash
# The hostile-call walk's long run: a release node serving tests/functions/walker, every
# function reachable from globalThis called with hostile arguments, once per seed (each seed
# orders the arguments differently) with a larger huge string than the test's. After each
# chunk of functions a plain request must still answer; the node must never die.
#
# Usage: benches/hostile-walk.sh            (SEEDS=20 HUGE=16777216 PORT=8097 by default)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SEEDS="${SEEDS:-20}"
HUGE="${HUGE:-16777216}"
PORT="${PORT:-8097}"
CHUNK=100

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
scripts/cargo build --release -q -p edge-node
target="${CARGO_TARGET_DIR:-$root/target}/release"

EDGE_LOG=warn "$target/edge-node" dev tests/functions/walker --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
wait_port "$PORT" /w/ok

count=$(curl -fs "http://127.0.0.1:$PORT/w/count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
calls=0 stopped=0 uncaught=0 failed=0
started=$(date +%s)
for seed in $(seq 1 "$SEEDS"); do
  for from in $(seq 0 "$CHUNK" "$count"); do
    out=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$PORT/w/run?from=$from&to=$((from + CHUNK))&seed=$seed&huge=$HUGE")
    status=${out##*$'\n'}
    body=${out%$'\n'*}
    case "$status" in
      200) calls=$((calls + $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["calls"])' "$body"))) ;;
      503) stopped=$((stopped + 1)) ;;
      500) [[ "$body" == *'"exception"'* ]] && uncaught=$((uncaught + 1)) || failed=$((failed + 1)) ;;
      *) failed=$((failed + 1)) ;;
    esac
    if ! kill -0 "$pid" 2>/dev/null; then echo "the node died (seed $seed, functions $from..)"; exit 1; fi
    [ "$(curl -s "http://127.0.0.1:$PORT/w/ok")" = ok ] || { echo "no answer after seed $seed, functions $from.."; failed=$((failed + 1)); }
  done
done
echo "functions: $count; seeds: $SEEDS; huge string: $HUGE bytes; seconds: $(( $(date +%s) - started ))"
echo "calls completed: $calls; chunks stopped by a limit: $stopped; chunks ended by an uncaught error: $uncaught; failures: $failed"
[ "$failed" -eq 0 ]
