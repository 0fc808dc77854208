#!/usr/bin/env bash
# Bytes an idle, settled daemon writes to storage: starts `wfdb serve TREE` on a fresh
# database, waits until it is ready and settled (the catch-up done, then SETTLE seconds for
# the dependency graph and any delayed flush), then reads write_bytes from /proc/PID/io
# before and after SECONDS seconds in which nothing is asked and nothing changes.
#
#   bench/idle_writes.sh TREE [SECONDS] [SETTLE]     (build first: cargo build --release)
#
# WFDB names another binary (to compare builds). Prints one line: bytes written, and per 30 s.
set -euo pipefail
tree=$(cd "$1" && pwd); seconds=${2:-30}; settle=${3:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
wfdb=${WFDB:-$here/target/release/wfdb}
[ -x "$wfdb" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$wfdb" serve "$tree" --db "$work/db" --socket "$work/wfdb.sock" >"$work/log" 2>&1 &
pid=$!
until [ -S "$work/wfdb.sock" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.1
done
"$wfdb" --socket "$work/wfdb.sock" clock >/dev/null   # settled: the start-up catch-up is done
sleep "$settle"
written() { awk '/^write_bytes:/ {print $2}' "/proc/$pid/io"; }
before=$(written)
sleep "$seconds"
after=$(written)
bytes=$((after - before))
echo "$bytes bytes written in ${seconds} s of idleness ($((bytes * 30 / seconds)) per 30 s); database $(du -sh "$work/db" | cut -f1)"
