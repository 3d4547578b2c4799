#!/usr/bin/env bash
# Real HTTP load against the marketplace example (release build), comparing
# telemetry off, metrics only, and everything on (metrics, access log to a
# file, spans exported to rotel at ratio 0.1). Prints requests per second and
# p50/p99 latency, and the ratios recorded in BENCHMARKS.md.
#
#   bash scripts/load.sh            # 3 rounds, 10 s per configuration
#   DURATION=30s ROUNDS=5 bash scripts/load.sh
#
# The configurations run interleaved (off, metrics, full, storm; then again),
# ROUNDS times; each ratio is taken within its round, against that round's
# `off`, and the median over the rounds is reported, with the range: on a
# shared machine, throughput drifts over minutes, which would otherwise land
# on whichever configuration ran last.
#
# Needs wrk (apt-get install -y wrk) and rotel (scripts/install-test-tools.sh).
# Every process it starts is stopped by PID; everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
command -v wrk >/dev/null || { echo "load.sh: wrk is missing: apt-get install -y wrk" >&2; exit 1; }
bash scripts/install-test-tools.sh >/dev/null
ROTEL="${ROTEL_AGENT:-$(ls .venv/lib/python*/site-packages/rotel/rotel-agent | head -n1)}"
cargo build --release --example marketplace -q
APP=target/release/examples/marketplace
WORK=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

grpc=$(free_port); http=$(free_port)
"$ROTEL" start --otlp-grpc-endpoint "127.0.0.1:$grpc" --otlp-http-endpoint "127.0.0.1:$http" --exporter blackhole >/dev/null 2>&1 &
pids+=($!)
wait_port "$grpc"

# run NAME LAYER [ENV...]: starts the app, loads it, prints "ROUND NAME rps p50_ms p99_ms".
# With STORM=1, a second wrk fetches /metrics continuously during the load,
# and the scrapes per second are written to $WORK/NAME.scrapes.
run() {
  local name=$1 layer=$2; shift 2
  local port; port=$(free_port)
  env "$@" "$APP" --listen "127.0.0.1:$port" --http-layer "$layer" >"$WORK/$name.log" 2>&1 &
  local pid=$!; pids+=("$pid")
  wait_port "$port"
  wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/api/v1/products/" >/dev/null  # warm-up
  local storm_pid=""
  if [ "${STORM:-0}" = 1 ]; then
    wrk -t1 -c1 -d"$DURATION" "http://127.0.0.1:$port/metrics" >"$WORK/$name.scrapes" &
    storm_pid=$!
  fi
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$port/api/v1/products/" >"$WORK/$name.wrk"
  [ -z "$storm_pid" ] || wait "$storm_pid"
  # CPU seconds the app used (utime + stime), to separate scrape and request costs.
  awk -v tck="$(getconf CLK_TCK)" '{print ($14 + $15) / tck}' "/proc/$pid/stat" >"$WORK/$name.cpu"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$round" "$name" "$WORK/$name.wrk" <<'PY'
import re, sys
round_no, name, path = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()
def ms(label):
    m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)" % label, text, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(round_no, name, rps, ms("50"), ms("99"))
PY
}

for round in $(seq "$ROUNDS"); do
  run off off OTEL_SDK_DISABLED=true
  run metrics metrics OTEL_SDK_DISABLED=true
  run full full OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$grpc" OTEL_EXPORTER_OTLP_PROTOCOL=grpc OTEL_TRACES_SAMPLER_ARG=0.1
  STORM=1 run storm metrics OTEL_SDK_DISABLED=true
done | tee "$WORK/results"

# Scrapes alone, to know what one scrape costs the app (compared with the
# last round's metrics and storm runs).
port=$(free_port)
OTEL_SDK_DISABLED=true "$APP" --listen "127.0.0.1:$port" --http-layer metrics >/dev/null 2>&1 &
pid=$!; pids+=("$pid"); wait_port "$port"
wrk -t1 -c1 -d"$DURATION" "http://127.0.0.1:$port/metrics" >"$WORK/scrape-only.wrk"
scrape_cpu=$(awk -v tck="$(getconf CLK_TCK)" '{print ($14 + $15) / tck}' "/proc/$pid/stat")
kill "$pid"; wait "$pid" 2>/dev/null || true

python3 - "$WORK" "$DURATION" "$scrape_cpu" <<'PY'
import re, sys
work, duration, scrape_cpu = sys.argv[1], sys.argv[2], float(sys.argv[3])
seconds = float(duration.rstrip("s"))
def rate(path):
    return float(re.search(r"Requests/sec:\s+([\d.]+)", open(path).read()).group(1))
req_metrics, cpu_metrics = rate(f"{work}/metrics.wrk"), float(open(f"{work}/metrics.cpu").read())
scrapes_alone = rate(f"{work}/scrape-only.wrk")
req_storm, scrapes_storm = rate(f"{work}/storm.wrk"), rate(f"{work}/storm.scrapes")
cpu_storm = float(open(f"{work}/storm.cpu").read())
per_request = cpu_metrics / (req_metrics * seconds)   # includes warm-up; same for both runs
per_scrape = scrape_cpu / (scrapes_alone * seconds)
scrape_share = scrapes_storm * per_scrape / (cpu_storm / seconds)
print(f"\nscrape storm: {scrapes_storm:.0f} scrapes/s of /metrics during the load; one scrape costs "
      f"{per_scrape * 1e6:.0f} us of app CPU, one request {per_request * 1e6:.1f} us")
print(f"scrapes took {scrape_share:.0%} of the app's CPU during the storm; request throughput "
      f"fell to {req_storm / req_metrics:.0%} of the metrics-only run "
      f"(expected from the scrapes' CPU alone: {1 - scrape_share:.0%})")
PY

python3 - "$WORK/results" <<'PY'
import statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    round_no, name, rps, p50, p99 = line.split()
    rounds.setdefault(round_no, {})[name] = (float(rps), float(p50), float(p99))
def summary(values, digits):
    values = sorted(values)
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({values[0]:.{digits}f}-{values[-1]:.{digits}f})"
print()
print(f"medians over {len(rounds)} rounds (range in parentheses); ratios are taken within each round")
print()
print("| configuration | requests/s | p50 | p99 | throughput vs off | p99 vs off |")
print("|---|---|---|---|---|---|")
for name in ("off", "metrics", "full", "storm"):
    rows = [r[name] for r in rounds.values()]
    offs = [r["off"] for r in rounds.values()]
    rps = statistics.median(x[0] for x in rows)
    p50 = statistics.median(x[1] for x in rows)
    p99 = statistics.median(x[2] for x in rows)
    throughput = summary([x[0] / o[0] for x, o in zip(rows, offs)], 2)
    tail = summary([x[2] / o[2] for x, o in zip(rows, offs)], 2)
    print(f"| {name} | {rps:.0f} | {p50:.2f} ms | {p99:.2f} ms | {throughput} | {tail} |")
PY
