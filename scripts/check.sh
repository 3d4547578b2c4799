#!/usr/bin/env bash
# Static checks: formatting, lints, docs, and one opentelemetry version family.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p multiweb-telemetry --all-targets --features client -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
dups=$(cargo tree --workspace -d -e normal,build,dev --prefix none --format '{p}' \
  | awk '{print $1, $2}' | grep -E '^opentelemetry' | sort -u || true)
names=$(printf '%s\n' "$dups" | awk 'NF {print $1}' | sort | uniq -d)
if [ -n "$names" ]; then
  echo "two versions of an opentelemetry crate in the dependency tree:" >&2
  printf '%s\n' "$dups" >&2
  exit 1
fi
echo "check: fmt, clippy, doc and dependency versions are clean"
