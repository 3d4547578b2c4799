#!/usr/bin/env bash
# Installs what the test suite needs, skipping what is already there.
# Debian/Ubuntu: Prometheus and promtool from apt.
set -euo pipefail

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)

if [ ${#need_apt[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-tools: missing ${need_apt[*]} and no apt-get; install them by hand" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-test-tools: installing ${need_apt[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

echo "install-test-tools: promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}')"
