#!/usr/bin/env bash
# How long `artq demo` takes after install, on a fresh ARTQ_HOME (backfill, training, one cycle).
# Usage: bench/demo.sh [runs]   (default 3; prints each run and the median)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
times=()
for i in $(seq 1 "$runs"); do
  home=$(mktemp -d)
  start=$EPOCHREALTIME
  ARTQ_HOME=$home .venv/bin/artq demo >/dev/null
  t=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
  times+=("$t")
  echo "run $i: ${t} s"
  rm -rf "$home"
done
printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median of %d: %.1f s\n", NR, a[int((NR+1)/2)]}'
