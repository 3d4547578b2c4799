#!/usr/bin/env bash
# Static checks: formatting, lints (the defaults, no default feature, and
# each feature of the library alone), docs, one opentelemetry version family,
# and what a build without default features leaves out.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Every feature of the library on its own (and none at all).
features=$(bash scripts/features.sh)
for feature in "" $features; do
  echo "check: clippy, multiweb-telemetry with ${feature:-no feature} alone"
  cargo clippy -p multiweb-telemetry --no-default-features ${feature:+--features "$feature"} \
    --all-targets -- -D warnings
done
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
dups=$(cargo tree --workspace -d -e normal,build,dev --prefix none --format '{p}' \
  | awk '{print $1, $2}' | grep -E '^opentelemetry' | sort -u || true)
names=$(printf '%s\n' "$dups" | awk 'NF {print $1}' | sort | uniq -d)
if [ -n "$names" ]; then
  echo "two versions of an opentelemetry crate in the dependency tree:" >&2
  printf '%s\n' "$dups" >&2
  exit 1
fi
# Without default features the library pulls in no web framework, no gRPC
# stack and no HTTP client.
heavy=$(cargo tree -p multiweb-telemetry -e normal --no-default-features --prefix none \
  | awk '{print $1}' | grep -xE 'axum|tonic|hyper|hyper-util|reqwest' | sort -u || true)
if [ -n "$heavy" ]; then
  echo "multiweb-telemetry without default features depends on:" $heavy >&2
  exit 1
fi
echo "check: fmt, clippy (every feature), doc and dependency versions are clean"
