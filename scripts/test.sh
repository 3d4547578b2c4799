#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine it first installs the tools the
# end-to-end tests need (see scripts/install-test-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-tools.sh
# The end-to-end tests run the example binaries, so build them first.
cargo build --workspace --examples
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc "$@"
# The library alone without its default features (no axum, OTLP export,
# TLS or process metrics): its own unit, integration and doc tests.
cargo test -p multiweb-telemetry --no-default-features "$@"
# Each feature of the library alone: its unit tests (the lint of each is in
# scripts/check.sh).
features=$(bash scripts/features.sh)
for feature in $features; do
  echo "test: multiweb-telemetry with $feature alone"
  cargo test -p multiweb-telemetry --no-default-features --features "$feature" --lib "$@"
done
