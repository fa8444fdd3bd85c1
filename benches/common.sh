# Shared by the benchmark scripts (sourced, not run).

# Waits until a server answers PATH (default /) on 127.0.0.1:PORT with a success (10 s at
# most).
wait_port() { # port [path]
  for _ in $(seq 1 200); do
    curl -fs "http://127.0.0.1:$1${2:-/}" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# Installs what the HTTP comparisons use (wrk, taskset, Deno from PyPI), builds edge-node and
# the baseline servers, and sets `deno_bin` and `target` (the binaries' folder). `PROFILE=dist`
# measures edge-node as shipped (whole-program LTO, Cargo.toml); the default is `release`.
comparison_setup() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
  if ! python3 -c 'import deno' 2>/dev/null; then python3 -m pip install -q deno; fi
  deno_bin="$(python3 -c 'import deno; print(deno.find_deno_bin())' 2>/dev/null || command -v deno)"
  scripts/cargo build --release -q -p edge-node -p benches
  target="${CARGO_TARGET_DIR:-$root/target}/release"
  # The baselines stay `release` builds; only edge-node is built with the profile.
  edge_node="$target/edge-node"
  if [ "${PROFILE:-release}" != release ]; then
    scripts/cargo build --profile "$PROFILE" -q -p edge-node
    edge_node="${CARGO_TARGET_DIR:-$root/target}/$PROFILE/edge-node"
  fi
}

# Waits until a server answers PATH on 127.0.0.1:PORT at all (any status: a POST-only
# handler answers a GET with an error), 10 s at most.
wait_up() { # port path
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  return 1
}

# Installs Bun (@oven/bun-linux-x64) and workerd from the npm registry into a cache folder
# once, and sets `bun_bin` and `workerd_bin`.
peers_setup() {
  local peers="${XDG_CACHE_HOME:-$HOME/.cache}/isola-bench-peers"
  bun_bin="$peers/node_modules/@oven/bun-linux-x64/bin/bun"
  workerd_bin="$peers/node_modules/.bin/workerd"
  if [ ! -x "$bun_bin" ] || [ ! -x "$workerd_bin" ]; then
    mkdir -p "$peers"
    [ -f "$peers/package.json" ] || echo '{"private": true}' >"$peers/package.json"
    npm install --silent --prefix "$peers" @oven/bun-linux-x64 workerd >/dev/null
  fi
}

# Sets `fn` (the function folder) and `wrk_script` (wrk's arguments for its requests) for
# the handler named: hello (a GET) or json (a 1 KB order POSTed). Fails for another name.
handler_setup() { # hello|json
  case "$1" in
    hello) fn=benches/hello-fn wrk_script=() ;;
    json) fn=benches/json-fn wrk_script=(-s "$root/benches/json-order.lua") ;;
    *) return 1 ;;
  esac
}

# A node serving the function folder `$fn` on 127.0.0.1:PORT (routes ROUTES, its edge.toml's
# by default) from DIR/node.toml, a node as it runs by default (`serve`).
node_toml() { # dir port [routes]
  mkdir -p "$1/functions/f"
  cp -r "$fn/src" "$1/functions/f/"
  if [ -n "${3:-}" ]; then
    sed "s|^routes = .*|routes = $3|" "$fn/edge.toml" >"$1/functions/f/edge.toml"
  else
    cp "$fn/edge.toml" "$1/functions/f/edge.toml"
  fi
  cat >"$1/node.toml" <<TOML
version = 1
[http]
listen = ["127.0.0.1:$2"]
[admin]
listen = []
[functions]
dir = "functions"
TOML
}

# A process's CPU time so far, in clock ticks (user and system).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
