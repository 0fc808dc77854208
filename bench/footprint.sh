#!/usr/bin/env bash
# Footprint of a background daemon, wfdb beside its baselines in one run: cold index against
# `xargs -P2 openssl dgst -sha256`, resident memory settled and after a mixed load, idle disk
# writes and CPU, the `status` round trip and the full listing. Watchman is measured in the
# same run when installed (skipped with a note when not).
#
#   bench/footprint.sh TREE [RUNS] [LOAD_SECONDS]
#
# Build first: cargo build --release --bin wfdb --example mixed_load
# Set WATCHMAN_LIST_S / WATCHMAN_RSS_MB / WATCHMAN_CLOCK_MS to compare against recorded
# Watchman figures when Watchman is not installed.
set -euo pipefail
tree=$(cd "$1" && pwd); runs=${2:-3}; load_s=${3:-60}
here=$(cd "$(dirname "$0")/.." && pwd)
wfdb=${WFDB:-$here/target/release/wfdb}
load=${LOAD:-$here/target/release/examples/mixed_load}
[ -x "$wfdb" ] && [ -x "$load" ] || {
  echo "build first: cargo build --release --bin wfdb --example mixed_load" >&2; exit 2; }
work=$(mktemp -d); sock=$work/wfdb.sock
cleanup() {
  [ -f "$work/pid" ] && kill -TERM "$(cat "$work/pid")" 2>/dev/null || true
  rm -rf "$work" "$tree/mixed-load-bench"
}
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(now); eval "$1" >/dev/null 2>&1; e=$(now); awk -v e="$e" -v s="$s" 'BEGIN {printf "%.4f\n", e - s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'; }
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }

find "$tree" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true   # warm the page cache
files=$(find "$tree" -type f | wc -l)

walk=$(for _ in $(seq "$runs"); do timeit "find '$tree' -type f"; done | median)
hash=$(for _ in $(seq "$runs"); do
  timeit "find '$tree' -type f -print0 | xargs -0 -P2 -n 256 openssl dgst -sha256"; done | median)

# Starts the daemon on a database folder; prints the seconds until its socket is bound
# (right after the start-up reconcile: readiness).
start_daemon() {
  local s e pid
  rm -f "$sock"; s=$(now)
  setsid "$wfdb" serve "$tree" --db "$1" --socket "$sock" >"$work/log" 2>&1 &
  pid=$!
  until [ -S "$sock" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.002
  done
  e=$(now); echo "$pid" >"$work/pid"
  awk -v e="$e" -v s="$s" 'BEGIN {printf "%.3f\n", e - s}'
}
stop_daemon() {
  local pid; pid=$(cat "$work/pid"); kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
  rm -f "$work/pid"
}
# Settled: the start-up catch-up is done, the dependency graph built, and the heap trimmed
# once work went quiet (1 s) — wait a little more than that.
settle() {
  "$wfdb" --socket "$sock" clock >/dev/null
  until "$wfdb" --socket "$sock" graph rank --limit 1 >/dev/null 2>&1; do sleep 0.05; done
  sleep "${SETTLE_S:-5}"
}

cold=()
for _ in $(seq "$runs"); do
  rm -rf "$work/db"; cold+=("$(start_daemon "$work/db")"); stop_daemon
done
cold_m=$(printf '%s\n' "${cold[@]}" | median)

# One daemon for the rest, started warm on the last cold run's database.
start_daemon "$work/db" >/dev/null; pid=$(cat "$work/pid"); settle
rss_settled=$(rss_mb "$pid")

t0=$(ticks "$pid"); w0=$(written "$pid")
sleep 30
t1=$(ticks "$pid"); w1=$(written "$pid")
hz=$(getconf CLK_TCK)
idle_cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN {printf "%.3f", 100 * t / hz / 30}')
idle_kib=$(( (w1 - w0) / 1024 ))

status=$(for _ in $(seq 20); do timeit "'$wfdb' --socket '$sock' status"; done | median)
floor=$(for _ in $(seq 20); do timeit "'$wfdb' --version"; done | median)
list=$(for _ in $(seq "$runs"); do timeit "'$wfdb' --socket '$sock' --json files"; done | median)

load_line=$("$load" "$tree" "$sock" "$load_s" 64 1000)
rss_loaded=$(rss_mb "$pid")
"$wfdb" --socket "$sock" clock >/dev/null; sleep "${SETTLE_S:-5}"
rss_after=$(rss_mb "$pid")
stop_daemon

wm_clock="${WATCHMAN_CLOCK_MS:-}"; wm_rss="${WATCHMAN_RSS_MB:-}"; wm_list="${WATCHMAN_LIST_S:-}"
wm_note="Watchman not installed: its figures are the recorded ones given in the environment (blank: none)"
if command -v watchman >/dev/null 2>&1; then
  wm="watchman --sockname=$work/wm.sock --statefile=$work/wm.state --logfile=$work/wm.log --no-save-state"
  q="[\"query\", \"$tree\", {\"expression\": [\"type\", \"f\"], \"fields\": [\"name\", \"size\", \"mtime_ms\", \"content.sha1hex\"]}]"
  $wm watch "$tree" >/dev/null; echo "$q" | $wm -j >/dev/null
  wm_list=$(for _ in $(seq "$runs"); do timeit "echo '$q' | $wm -j"; done | median)
  wm_clock=$(for _ in $(seq 20); do timeit "$wm clock '$tree'"; done | median | awk '{printf "%.1f", $1 * 1000}')
  wm_pid=$($wm get-pid | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  wm_rss=$(rss_mb "$wm_pid")
  $wm shutdown-server >/dev/null 2>&1 || true
  wm_note="Watchman $(watchman --version) measured in this run"
fi

ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
echo "tree: $tree — $files files; medians of $runs runs; $wm_note"
echo
echo "| figure | wfdb | baseline | ratio |"
echo "|---|---|---|---|"
echo "| disk writes, idle settled daemon, 30 s | ${idle_kib} KiB | | |"
echo "| RSS settled (graph built) | ${rss_settled} MB | Watchman ${wm_rss:-?} MB | $([ -n "$wm_rss" ] && ratio "$rss_settled" "$wm_rss") |"
echo "| RSS after the mixed load → settled again | ${rss_loaded} → ${rss_after} MB | settled ${rss_settled} MB | $(ratio "$rss_after" "$rss_settled") |"
echo "| \`wfdb status\` round trip (CLI, process start included) | $(ms "$status") ms | \`watchman clock\` ${wm_clock:-?} ms; \`wfdb --version\` $(ms "$floor") ms | $([ -n "$wm_clock" ] && ratio "$(ms "$status")" "$wm_clock") |"
echo "| idle CPU, 30 s | ${idle_cpu} % of a core | | |"
echo "| cold index, start → ready | ${cold_m} s | xargs -P2 openssl dgst -sha256: ${hash} s | $(ratio "$cold_m" "$hash") |"
echo "| full listing \`wfdb --json files\` | ${list} s | Watchman hashed query ${wm_list:-?} s; find -type f ${walk} s | $([ -n "$wm_list" ] && ratio "$list" "$wm_list") |"
echo
echo "$load_line"
