#!/usr/bin/env bash
# A long run of the vhost-user fuzz target (native/fuzz/fuzz-vhost.c): RUNS
# executions (default 1,000,000) from its seed corpus. Prints executions,
# exec/s, coverage (cov = edges, ft = features), corpus size and time; exits 1
# on any finding (the input is kept and its path printed).
#   bench/fuzz-vhost.sh [RUNS] [CORPUS_DIR]   (a CORPUS_DIR is kept and reused)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-1000000}
bin=$(bash "$root/native/build.sh" --fuzz)
work=$(mktemp -d "${TMPDIR:-/tmp}/vub-fuzz.XXXXXX")
corpus=${2:-$work/corpus}
mkdir -p "$corpus" "$work/seeds" "$work/artifacts"
VUB_FUZZ_SEEDS="$work/seeds" "$bin"
symbolizer=/usr/lib/llvm-14/bin/llvm-symbolizer
[ -x "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer

echo "fuzz-vhost: $runs executions, corpus $corpus, log $work/log" >&2
start=$(date +%s)
rc=0
"$bin" -runs="$runs" -timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  "$corpus" "$work/seeds" >"$work/log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))

stat() { sed -n "s/^stat::$1: *//p" "$work/log"; }
last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$work/log" | tail -n 1 || true)
cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\)\/\([^ ]*\).*/cov \1, ft \2, corpus \3 inputs (\4)/p' <<<"$last")
echo "executions:   $(stat number_of_executed_units)"
echo "exec/s:       $(stat average_exec_per_sec)"
echo "coverage:     $cov"
echo "corpus dir:   $(find "$corpus" -type f | wc -l) files"
echo "time:         ${secs} s"
echo "peak RSS:     $(stat peak_rss_mb) MB"
if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  grep -v 'NEW_FUNC\[' "$work/log" | tail -n 60 >&2
  echo "FINDING: exit $rc; input(s): $(ls "$work/artifacts")" >&2
  exit 1
fi
echo "findings:     none"
[ -n "${2:-}" ] || rm -rf "$work"
