#!/usr/bin/env bash
# Instructions per request of benchmark contenders, counted by callgrind: a
# measure that does not move with the machine's load, for comparing
# contenders (and changes) on a shared or noisy machine. Every thread of the
# process counts (the span exporter and log writer threads too).
#
#   bash scripts/bench-instructions.sh full_stack no_telemetry hand_made multiweb_keep_errors
#   bash scripts/bench-instructions.sh http_layer no_layer axum_prometheus multiweb_metrics_only
#   FEATURES=client bash scripts/bench-instructions.sh client reqwest multiweb_reqwest
#   PER=sqlite3_step FEATURES=sqlx bash scripts/bench-instructions.sh db_query sqlx_fmt_default multiweb_instrumented
#
# Each contender runs twice under callgrind (criterion's --profile-time 2 and
# 6 seconds); the difference of the two totals divided by the difference of
# the two request counts cancels one-time costs (start-up, warm-up, clock
# calibration). Requests are counted as calls of `http::Request::get`, which
# every benchmark iteration makes once; PER names another function called
# once per iteration (a callgrind_annotate name, as an awk regex), and
# FEATURES more crate features (the benchmark's required-features are
# always on). Needs valgrind (apt-get install -y
# valgrind); the full_stack benchmark also needs rotel (see
# scripts/install-test-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
  echo "bench-instructions: valgrind not found; install it with: apt-get install -y valgrind" >&2
  exit 1
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 BENCH CONTENDER..." >&2
  exit 2
fi
bench=$1
shift
per=${PER:-'http::request::Request<\\(\\)>::get'}
# The bench's own required-features (Cargo.toml) are always turned on.
required=$(awk -v name="name = \"$bench\"" '/^\[/ {inside = 0} $0 == name {inside = 1}
  inside && /^required-features/ {sub(/^[^[]*\[/, ""); gsub(/[]",]/, " "); print}' multiweb-telemetry/Cargo.toml)
features=$(echo ${FEATURES:-} $required)
built=$(cargo bench -p multiweb-telemetry ${features:+--features "$features"} --bench "$bench" --no-run 2>&1) || {
  echo "$built" | tail -n 20 >&2
  echo "bench-instructions: could not build the $bench benchmark (features: ${features:-none})" >&2
  exit 1
}
exe=$(echo "$built" | grep -o "[^ (]*/release/deps/${bench}-[0-9a-f]*" | tail -1 || true)
if [ -z "$exe" ]; then
  echo "bench-instructions: no $bench executable in cargo's output" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints "<total instructions> <calls of Request::get>" for one callgrind file.
count() {
  local file=$1 total calls
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$file")
  # The callers' lines ("<", with their call counts) precede the "*" line.
  calls=$(callgrind_annotate --threshold=100 --inclusive=yes --tree=caller "$file" 2>/dev/null |
    awk -v per="$per" 'BEGIN {RS = ""; FS = "\n"}
         $0 ~ ("\\* [^\n]*" per " ") {
           for (i = 1; i <= NF; i++) if ($i ~ / < / && match($i, /\([0-9,]+x\)/)) {
             n = substr($i, RSTART + 1, RLENGTH - 3); gsub(/,/, "", n); sum += n
           }
         }
         END {print sum + 0}')
  echo "$total $calls"
}

for contender in "$@"; do
  for seconds in 2 6; do
    valgrind --tool=callgrind --callgrind-out-file="$work/$seconds.out" \
      "$exe" --bench --profile-time "$seconds" "${bench}/${contender}\$" >/dev/null 2>&1
  done
  read -r total_short calls_short < <(count "$work/2.out")
  read -r total_long calls_long < <(count "$work/6.out")
  if [ "$calls_long" -le "$calls_short" ]; then
    echo "bench-instructions: $contender: no iterations counted (is the name right? PER=$per)" >&2
    exit 1
  fi
  echo "$bench/$contender: $(((total_long - total_short) / (calls_long - calls_short))) instructions per iteration"
done
