#!/usr/bin/env bash
# Instructions per request of the marketplace example under real HTTP load,
# per configuration of scripts/load.sh (off, metrics, full): the app runs
# under callgrind, wrk loads it, and the instructions executed in all of the
# app's threads while wrk ran are divided by the requests wrk completed.
# Unlike requests per second on a shared machine, the count barely moves
# from run to run (it leaves out the kernel, which is the same work in every
# configuration: one read and one writev per request).
#
#   bash scripts/app-instructions.sh            # off metrics full
#   bash scripts/app-instructions.sh full       # one configuration
#   KEEP=1 bash scripts/app-instructions.sh     # keep the callgrind files
#                                               # (callgrind_annotate them)
#
# Needs valgrind and wrk (installed with apt-get when missing) and rotel
# (scripts/install-test-tools.sh). Everything listens on 127.0.0.1; every
# process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "app-instructions.sh: install ${need[*]}" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/install-test-tools.sh >/dev/null
ROTEL="${ROTEL_AGENT:-$(ls .venv/lib/python*/site-packages/rotel/rotel-agent | head -n1)}"
cargo build --release --example marketplace -q
APP=target/release/examples/marketplace
WORK=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] && echo "callgrind files in $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

grpc=$(free_port); http=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$grpc" --otlp-http-endpoint "127.0.0.1:$http" --exporter blackhole >/dev/null 2>&1 &
pids+=($!)
wait_port "$grpc"

# measure NAME LAYER [ENV...]: prints "NAME requests instructions/request".
measure() {
  local name=$1 layer=$2; shift 2
  local port; port=$(free_port)
  env "$@" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$name.callgrind" \
    "$APP" --listen "127.0.0.1:$port" --http-layer "$layer" >"$WORK/$name.log" 2>"$WORK/$name.valgrind" &
  local pid=$!; pids+=("$pid")
  wait_port "$port"
  wrk -t1 -c8 -d3s "http://127.0.0.1:$port/api/v1/products/" >/dev/null  # warm-up
  callgrind_control -i on "$pid" >/dev/null 2>&1
  wrk -t1 -c8 -d"${DURATION:-10s}" "http://127.0.0.1:$port/api/v1/products/" >"$WORK/$name.wrk"
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local requests
  requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
  # `totals:` is the count while instrumented (`summary:` may repeat it).
  awk -v name="$name" -v requests="${requests:-0}" '/^totals:/ {s += $2} END {
    if (requests == 0) { print "app-instructions.sh: no request completed for " name > "/dev/stderr"; exit 1 }
    printf "%s %d %.0f\n", name, requests, s / requests }' "$WORK/$name.callgrind"* >>"$WORK/results"
}

configs=("${@:-off metrics full}")
: >"$WORK/results"
for config in ${configs[*]}; do
  case "$config" in
    off) measure off off OTEL_SDK_DISABLED=true ;;
    metrics) measure metrics metrics OTEL_SDK_DISABLED=true ;;
    full) measure full full OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$grpc" \
      OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_TRACES_SAMPLER_ARG=0.1 ;;
    *) echo "app-instructions.sh: unknown configuration $config (off, metrics, full)" >&2; exit 2 ;;
  esac
done
awk '{print; n[$1] = $3} END {
  if ("off" in n) for (c in n) if (c != "off") printf "%s/off: %.2f\n", c, n[c] / n["off"] }' "$WORK/results"
