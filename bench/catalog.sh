#!/usr/bin/env bash
# Catalog benchmark: cold index, warm restart and a full listing of TREE by wfdb, each beside
# baselines measured in the same run (find -type f; parallel sha256sum), plus peak RSS and
# Watchman's full query with content hashes when watchman is installed.
#
#   bench/catalog.sh TREE [RUNS]        (build first: cargo build --release)
#
# Prints a Markdown table. Medians of RUNS (default 3) runs; the page cache is warm for all.
set -euo pipefail
tree=$(cd "$1" && pwd); runs=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
wfdb=${WFDB:-$here/target/release/wfdb}
[ -x "$wfdb" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d); trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
sock=$work/wfdb.sock

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { local s e; s=$(now); eval "$1" >/dev/null 2>&1; e=$(now); awk -v e="$e" -v s="$s" 'BEGIN {printf "%.3f\n", e - s}'; }

find "$tree" -type f -print0 | xargs -0 cat >/dev/null 2>&1 || true   # warm the page cache
files=$(find "$tree" -type f | wc -l); bytes=$(du -sb "$tree" | cut -f1)

walk=$(for _ in $(seq "$runs"); do timeit "find '$tree' -type f"; done | median)
hash=$(for _ in $(seq "$runs"); do timeit "find '$tree' -type f -print0 | xargs -0 -P2 -n 256 sha256sum"; done | median)

# Starts the daemon on a database folder; prints "seconds-until-ready peak-rss-kib".
start_daemon() {
  local db=$1 s e pid
  s=$(now)
  # setsid: the daemon must outlive the process substitution that starts it.
  setsid "$wfdb" serve "$tree" --db "$db" --socket "$sock" >"$work/log" 2>&1 &
  pid=$!
  # The socket is bound right after the start-up reconcile: its appearance is readiness.
  # (Polling with the CLI would spend the cores the daemon is measured on.)
  until [ -S "$sock" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
    sleep 0.002
  done
  e=$(now)
  echo "$pid" >"$work/pid"
  awk -v e="$e" -v s="$s" 'BEGIN {printf "%.3f ", e - s}'
  awk '/VmHWM/ {print $2}' "/proc/$pid/status"
}
stop_daemon() {
  local pid; pid=$(cat "$work/pid"); kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
}

cold=(); cold_rss=(); warm=(); warm_rss=(); list=()
for i in $(seq "$runs"); do
  rm -rf "$work/db"
  read -r t r < <(start_daemon "$work/db"); cold+=("$t"); cold_rss+=("$r")
  stop_daemon
  read -r t r < <(start_daemon "$work/db"); warm+=("$t"); warm_rss+=("$r")
  hashed=$("$wfdb" --socket "$sock" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["roots"][0]["last_scan"]["files_hashed"])')
  catalogued=$("$wfdb" --socket "$sock" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["roots"][0]["files"])')
  # The listing is measured on a settled daemon: wait for the start-up catch-up and the
  # background build of the dependency graph first.
  "$wfdb" --socket "$sock" clock >/dev/null
  until "$wfdb" --socket "$sock" graph rank --limit 1 >/dev/null 2>&1; do sleep 0.05; done
  list+=("$(timeit "'$wfdb' --socket '$sock' --json files")")
  stop_daemon
done
m() { printf '%s\n' "$@" | median; }
cold_m=$(m "${cold[@]}"); warm_m=$(m "${warm[@]}"); list_m=$(m "${list[@]}")

wm_first="n/a"; wm_warm="n/a"
if command -v watchman >/dev/null 2>&1; then
  wm="watchman --sockname=$work/wm.sock --statefile=$work/wm.state --logfile=$work/wm.log --no-save-state"
  q="[\"query\", \"$tree\", {\"expression\": [\"type\", \"f\"], \"fields\": [\"name\", \"size\", \"mtime_ms\", \"content.sha1hex\"]}]"
  s=$(now); $wm watch "$tree" >/dev/null; echo "$q" | $wm -j >/dev/null; e=$(now)
  wm_first=$(awk -v e="$e" -v s="$s" 'BEGIN {printf "%.3f", e - s}')
  wm_warm=$(for _ in $(seq "$runs"); do timeit "echo '$q' | $wm -j"; done | median)
  $wm shutdown-server >/dev/null 2>&1 || true
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
echo "tree: $tree — $files files, $((bytes / 1048576)) MiB; wfdb catalogued $catalogued (ignored files excluded); medians of $runs runs"
echo
echo "| measure | seconds | baseline | ratio |"
echo "|---|---|---|---|"
echo "| cold index (start → ready) | $cold_m | xargs -P2 sha256sum: $hash | $(ratio "$cold_m" "$hash") |"
echo "| warm restart, unchanged tree ($hashed files hashed) | $warm_m | find -type f: $walk | $(ratio "$warm_m" "$walk") |"
echo "| full listing \`wfdb --json files\` | $list_m | watchman query with content.sha1hex (warm): $wm_warm | $( [ "$wm_warm" = n/a ] && echo n/a || ratio "$list_m" "$wm_warm") |"
echo "| watchman watch + first hashed query | $wm_first | | |"
echo
echo "peak RSS: cold $(m "${cold_rss[@]}") KiB, warm restart $(m "${warm_rss[@]}") KiB"
