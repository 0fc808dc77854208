#!/usr/bin/env bash
# git status with and without `wfdb fsmonitor-hook`, each with and without git's untracked
# cache, on TREE: a git repository whose files are committed. Also the hook alone, and a
# status after one tracked file was edited.
#
#   bench/fsmonitor.sh TREE [RUNS]        (build first: cargo build --release)
#
# Starts its own daemon on TREE (database and socket in a temporary folder, or WFDB_DB and
# WFDB_SOCKET), leaves TREE's git configuration as it was, and prints a Markdown table of
# medians of RUNS (default 10) runs, each configuration after 3 warm-up runs that settle the
# index (its fsmonitor token and untracked cache). Uses hyperfine when installed.
set -euo pipefail
tree=$(cd "$1" && pwd); runs=${2:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
wfdb=${WFDB:-$here/target/release/wfdb}
[ -x "$wfdb" ] || { echo "build first: cargo build --release" >&2; exit 2; }
git -C "$tree" rev-parse --git-dir >/dev/null || { echo "$tree is not a git repository" >&2; exit 2; }
work=$(mktemp -d)
db=${WFDB_DB:-$work/db}; sock=${WFDB_SOCKET:-$work/wfdb.sock}
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$wfdb" serve "$tree" --db "$db" --socket "$sock" >"$work/log" 2>&1 &
pid=$!
until [ -S "$sock" ]; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log" >&2; exit 1; }
  sleep 0.01
done
"$wfdb" --socket "$sock" clock >/dev/null   # settled: the start-up catch-up is done

hook="'$wfdb' --socket '$sock' fsmonitor-hook"
plain="-c core.fsmonitor=false"
with="-c core.fsmonitor=\"$hook\""
files=$(git -C "$tree" ls-files | wc -l)
# A tracked file that is not a dotfile (an edited .gitignore would make the daemon rescan).
edited=$(git -C "$tree" ls-files | awk '!f && !/(^|\/)\./ {print; f=1}')

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# measure COMMAND [PREPARE]: prints the median seconds of COMMAND (run in TREE), PREPARE
# run before each run.
measure() {
  local cmd=$1 prep=${2:-true}
  if command -v hyperfine >/dev/null; then
    (cd "$tree" && hyperfine -N --style none --warmup 3 --runs "$runs" --prepare "$prep" \
      --export-json "$work/h.json" "$cmd" >"$work/hyperfine.log" 2>&1) || { cat "$work/hyperfine.log" >&2; exit 1; }
    python3 -c 'import json,sys; print("%.4f" % json.load(open(sys.argv[1]))["results"][0]["median"])' "$work/h.json"
  else
    for i in $(seq $((runs + 3))); do
      (cd "$tree" && eval "$prep" >/dev/null 2>&1)
      s=$(date +%s.%N); (cd "$tree" && eval "$cmd" >/dev/null 2>&1); e=$(date +%s.%N)
      [ "$i" -gt 3 ] && awk -v e="$e" -v s="$s" 'BEGIN {printf "%.4f\n", e - s}'
    done | median
  fi
}

# hyperfine -N splits on spaces and honours quotes, so the hook command stays one argument.
declare -a rows
row() { rows+=("| $1 | $(measure "$2" "${3:-true}") |"); }
row "git status, no fsmonitor, no untracked cache" "git $plain -c core.untrackedCache=false status --porcelain"
row "git status, no fsmonitor, untracked cache" "git $plain -c core.untrackedCache=true status --porcelain"
row "git status, fsmonitor hook, no untracked cache" "git $with -c core.untrackedCache=false status --porcelain"
row "git status, fsmonitor hook, untracked cache" "git $with -c core.untrackedCache=true status --porcelain"
edit="sh -c 'date +%N >> $edited'"
row "one tracked file edited before each run, no fsmonitor, untracked cache" \
  "git $plain -c core.untrackedCache=true status --porcelain" "$edit"
row "one tracked file edited before each run, fsmonitor hook, untracked cache" \
  "git $with -c core.untrackedCache=true status --porcelain" "$edit"
token=$(cd "$tree" && "$wfdb" --socket "$sock" fsmonitor-hook 2 start | tr '\0' '\n' | awk 'NR == 1')
row "the hook alone, nothing changed" "'$wfdb' --socket '$sock' fsmonitor-hook 2 $token"
# The answers must agree, or the timings mean nothing.
a=$(cd "$tree" && eval "git $with -c core.untrackedCache=true status --porcelain")
b=$(cd "$tree" && git $plain -c core.untrackedCache=false status --porcelain)
[ "$a" = "$b" ] || { echo "git status differs with the hook:" >&2; diff <(echo "$a") <(echo "$b") >&2; exit 1; }
git -C "$tree" checkout -q -- "$edited"

echo "$files tracked files; medians of $runs runs (seconds)"
echo
echo "| measure | seconds |"
echo "|---|---|"
printf '%s\n' "${rows[@]}"
