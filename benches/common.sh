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
# the baseline servers, and sets `deno_bin` and `target` (the release binaries' folder).
comparison_setup() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  command -v taskset >/dev/null || { apt-get update -qq && apt-get install -y -qq util-linux; }
  if ! python3 -c 'import deno' 2>/dev/null; then python3 -m pip install -q deno; fi
  deno_bin="$(python3 -c 'import deno; print(deno.find_deno_bin())' 2>/dev/null || command -v deno)"
  scripts/cargo build --release -q -p edge-node -p benches
  target="${CARGO_TARGET_DIR:-$root/target}/release"
}
