#!/usr/bin/env bash
# Node compatibility's cost: cold start (from a spare isolate, the node's path) and memory per
# idle isolate for hello world without nodejs_compat, with it, and importing node:crypto,
# node:stream and node:buffer. Then the npm corpus (tests/functions/npm-corpus) bundled by
# edge-node and by esbuild (--bundle, browser platform as wrangler's worker builds), side by
# side: size and time. edge-node's bundle is one module per file, lz4-compressed.
# Usage: benches/node-compat.sh [N]   (N starts / isolates per case, default 200)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
n="${1:-200}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
scripts/cargo build --release -q -p benches --bin cold-start --bin isolates
scripts/cargo build --release -q -p edge-node
bin="$CARGO_TARGET_DIR/release"
for case in plain compat modules; do
  echo "== $case"
  "$bin/cold-start" "$n" --spare --fn "benches/node-fns/$case"
  "$bin/cold-start" "$n" --spare --code-cache --fn "benches/node-fns/$case" | sed 's/^/with the code cache: /'
  "$bin/isolates" "$n" --fn "benches/node-fns/$case" | grep -v "first answer"
done

corpus=tests/functions/npm-corpus
[ -d "$corpus/node_modules" ] || npm ci --prefix "$corpus" --no-audit --no-fund --silent
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
npm install --prefix "$tools" --no-audit --no-fund --silent esbuild@0.25 >/dev/null
echo "== npm corpus: edge-node bundle"
start=$(date +%s.%N)
"$bin/edge-node" bundle "$corpus" -o "$tools/corpus.bundle"
echo "time $(echo "$(date +%s.%N) - $start" | bc) s"
echo "== npm corpus: esbuild --bundle --platform=browser (a package's browser field applies, as in ours; Node's built-ins left external, as wrangler leaves them to workerd)"
start=$(date +%s.%N)
"$tools/node_modules/.bin/esbuild" "$corpus/index.js" --bundle --platform=browser --format=esm \
  --main-fields=browser,module,main --conditions=workerd,worker,browser \
  --define:process.env.NODE_ENV='"production"' --log-level=error \
  --external:node:* $(node -p "require('module').builtinModules.map((m) => '--external:' + m).join(' ')") \
  --outfile="$tools/corpus.esbuild.js" \
  && echo "$(stat -c %s "$tools/corpus.esbuild.js") bytes written" || echo "esbuild refused the corpus"
echo "time $(echo "$(date +%s.%N) - $start" | bc) s"
