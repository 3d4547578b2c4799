#!/usr/bin/env bash
# Prints the library's Cargo features, one a line, without `default`: the
# list scripts/check.sh lints and scripts/test.sh tests one by one.
set -euo pipefail
cd "$(dirname "$0")/.."
sed -n '/^\[features\]/,/^\[/p' multiweb-telemetry/Cargo.toml |
  awk -F' *= *' '/^[a-z][a-z-]* *=/ && $1 != "default" {print $1}'
