#!/usr/bin/env bash
# Installs what the test suite needs, skipping what is already there:
# - Prometheus and promtool, from Debian's packages;
# - amtool (Alertmanager) and docker-compose, from Debian's packages, for the
#   checks of the deploy/ assets (tests/tests/deploy_assets.rs);
# - rotel, a real OTLP collector, from PyPI into ./.venv (the tests look for
#   .venv/lib/python*/site-packages/rotel/rotel-agent, or $ROTEL_AGENT);
# - pandas and scipy into ./.venv, to run the guide's analysis snippet on the
#   CSV files of the collect_metrics example;
# - PostgreSQL (with pg_stat_statements), Redis, and prometheus-postgres-exporter,
#   prometheus-redis-exporter and prometheus-node-exporter, from Debian's
#   packages, for the whole-stack tests (tests/tests/database_stack.rs), and
#   the system user `multiweb-pg` they run PostgreSQL as when run as root
#   (PostgreSQL refuses to run as root). Nothing is started here: the tests
#   start their own servers on 127.0.0.1 in temporary directories.
set -euo pipefail
cd "$(dirname "$0")/.."

ROTEL_VERSION="0.0.1a15"

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
# Debian keeps initdb and postgres off PATH, in /usr/lib/postgresql/<version>/bin.
ls /usr/lib/postgresql/*/lib/pg_stat_statements.so >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || need_apt+=(prometheus-postgres-exporter)
command -v prometheus-redis-exporter >/dev/null 2>&1 || need_apt+=(prometheus-redis-exporter)
command -v prometheus-node-exporter >/dev/null 2>&1 || need_apt+=(prometheus-node-exporter)

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
echo "install-test-tools: amtool $(amtool --version 2>&1 | head -n1 | awk '{print $3}')"
echo "install-test-tools: docker-compose $(docker-compose version --short 2>/dev/null || true)"
echo "install-test-tools: $(ls -d /usr/lib/postgresql/*/bin | tail -n1)/postgres, redis-server $(redis-server --version | awk '{print $3}'), the postgres, redis and node exporters"
# The packages' own services are not used (a container usually refuses to
# start them anyway); the tests run PostgreSQL as this user when run as root.
if [ "$(id -u)" -eq 0 ] && ! id multiweb-pg >/dev/null 2>&1; then
  echo "install-test-tools: creating the system user multiweb-pg to run PostgreSQL"
  useradd --system --no-create-home --shell /usr/sbin/nologin multiweb-pg
fi

rotel_agent() { ls .venv/lib/python*/site-packages/rotel/rotel-agent 2>/dev/null | head -n1; }
if [ -z "${ROTEL_AGENT:-}" ] && [ -z "$(rotel_agent)" ]; then
  echo "install-test-tools: installing rotel==$ROTEL_VERSION into .venv"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --pre "rotel==$ROTEL_VERSION"
fi
echo "install-test-tools: rotel-agent at ${ROTEL_AGENT:-$(rotel_agent)}"

if ! .venv/bin/python3 -c 'import pandas, scipy' >/dev/null 2>&1; then
  echo "install-test-tools: installing pandas and scipy into .venv"
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check pandas scipy
fi
echo "install-test-tools: pandas $(.venv/bin/python3 -c 'import pandas; print(pandas.__version__)')"
