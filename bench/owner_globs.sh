#!/usr/bin/env bash
# GetFile latency with many owned-path globs registered (issue 12): starts WFDB on a small
# generated tree, runs the `owner_globs` example against it (no agents, GLOBS globs over
# AGENTS agents, after removing them) and prints the daemon's RSS at each stage.
#
#   bench/owner_globs.sh [GLOBS] [AGENTS] [N]
#       (build first: cargo build --release --bin wfdb --example owner_globs;
#        WFDB=path/to/wfdb measures another build of the daemon)
set -euo pipefail
globs=${1:-10000}; agents=${2:-100}; n=${3:-200}
here=$(cd "$(dirname "$0")/.." && pwd)
wfdb=${WFDB:-$here/target/release/wfdb}
example=$here/target/release/examples/owner_globs
[ -x "$wfdb" ] && [ -x "$example" ] || {
  echo "build first: cargo build --release --bin wfdb --example owner_globs" >&2; exit 2; }
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for i in $(seq 0 199); do
  mkdir -p "$work/tree/src/area$((i % 97))/sub"
  echo "x = $i" > "$work/tree/src/area$((i % 97))/sub/mod${i}_a.py"
done
"$wfdb" serve "$work/tree" --db "$work/db" --socket "$work/wfdb.sock" >"$work/log" 2>&1 &
pid=$!
until [ -S "$work/wfdb.sock" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.01
done
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status"; }
echo "daemon RSS at start: $(rss)"
"$example" "$work/wfdb.sock" src/area5/sub/mod5_a.py "$globs" "$agents" "$n"
echo "daemon RSS at the end: $(rss)"
