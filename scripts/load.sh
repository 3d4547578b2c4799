#!/usr/bin/env bash
# Real HTTP load against the marketplace example (release build), comparing
# telemetry off, metrics only, everything on (metrics, access log to a
# file, spans exported to rotel at ratio 0.1), and the peer: the same
# application with the stack users assemble by hand (`--http-layer peer`:
# tower-http TraceLayer, tracing-opentelemetry with the SDK's batch
# processor and opentelemetry-otlp, tracing-subscriber JSON, axum-prometheus;
# same routes, same 10 % sampling, same log file). Prints requests per
# second, p50/p99 latency and the app's CPU time per request, and the ratios
# recorded in BENCHMARKS.md: full against peer in throughput, and the CPU per
# request each adds over off (which leaves out the socket and kernel work
# every configuration shares).
#
#   bash scripts/load.sh                      # 20 rounds of 2 s slices
#   ROUNDS=40 SLICE=3s PIN=1 bash scripts/load.sh   # SLICE in whole seconds
#
# Every configuration runs as its own process, all started at once and kept
# running. Each round loads each of them for one SLICE (in an order that
# rotates from round to round); each ratio is taken within its round, and
# the median over the rounds is reported with the interquartile range. On a
# shared machine throughput drifts within seconds; slices this short put
# the drift on every configuration alike, where long runs one after the
# other would land it on whichever ran last.
#
# A fourth process ("storm", metrics only) is loaded while a second wrk
# fetches /metrics without pause; with the cost of one scrape measured
# alone at the end, this shows whether scrapes slow requests by more than
# their own CPU time.
#
# PIN=1 pins the apps to CPU 0 and wrk and rotel to CPU 1 (taskset), so the
# load generator does not compete with the app for a core.
#
# BASE=<commit> also builds the example at that commit and loads its
# `metrics` and `full` in the same rounds ("metrics@base", "full@base"),
# then prints the working tree against it: did a change make the service
# faster under load? Throughput drifts by 10-15 % between runs of one build
# on a shared machine; only builds loaded in the same rounds show a few
# percent, and an unchanged path still shows the noise. For small changes,
# count instructions instead (scripts/app-instructions.sh).
#
#   BASE=HEAD~3 ROUNDS=40 bash scripts/load.sh
#
# Needs wrk (installed with apt-get when missing) and rotel
# (scripts/install-test-tools.sh). Every process it starts is stopped by
# PID; everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  command -v apt-get >/dev/null || { echo "load.sh: wrk is missing and there is no apt-get; install wrk" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "load.sh: installing wrk with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
bash scripts/install-test-tools.sh >/dev/null
ROTEL="${ROTEL_AGENT:-$(ls .venv/lib/python*/site-packages/rotel/rotel-agent | head -n1)}"
base_dir=$(mktemp -d)
cleanup() {
  git worktree remove --force "$base_dir/tree" 2>/dev/null || true
  rm -rf "$base_dir"
}
trap cleanup EXIT
BASE_APP=""
if [ -n "${BASE:-}" ]; then
  base=$(git rev-parse --verify "$BASE^{commit}")
  # Built in a worktree, into a target directory of its own (kept, so only
  # the changed crates rebuild next time). Not target/ itself: cargo names a
  # workspace crate's artifacts the same in any checkout and judges them by
  # mtime against paths relative to the crate, so after the base build the
  # working tree's (older) files would look built, and its binary would be
  # the base's.
  repo=$PWD
  git worktree add -q --detach "$base_dir/tree" "$base"
  (cd "$base_dir/tree" && CARGO_TARGET_DIR="$repo/target/load-base" cargo build --release --example marketplace -q)
  BASE_APP="$base_dir/marketplace"
  cp target/load-base/release/examples/marketplace "$BASE_APP"
fi
cargo build --release --example marketplace -q

# Not `exec`: the base build is removed when Python is done.
ROTEL="$ROTEL" APP=target/release/examples/marketplace BASE_APP="$BASE_APP" python3 - <<'PY'
import os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

app, rotel = os.environ["APP"], os.environ["ROTEL"]
base_app = os.environ.get("BASE_APP", "")
rounds = int(os.environ.get("ROUNDS", "20"))
slice_ = os.environ.get("SLICE", "2s")
if not re.fullmatch(r"[1-9][0-9]*s", slice_):
    sys.exit(f"load.sh: SLICE is whole seconds, like 2s, not {slice_!r}")
connections = os.environ.get("CONNECTIONS", "32")
pin = os.environ.get("PIN", "0") == "1"
app_cpu, load_cpu = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pin else ([], [])
work = tempfile.mkdtemp()
procs = []


def stop_all():
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"load.sh: nothing listens on port {port}")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, duration, path="/api/v1/products/", conns=connections):
    out = subprocess.run(
        load_cpu + ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency",
                    f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\b" % label, out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, ms("50"), ms("99"), requests


try:
    grpc, http = free_port(), free_port()
    procs.append(subprocess.Popen(
        load_cpu + [rotel, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
                    "--otlp-http-endpoint", f"127.0.0.1:{http}", "--exporter", "blackhole"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(grpc)
    off_env = {"OTEL_SDK_DISABLED": "true"}
    full_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    configs = {
        "off": (app, "off", off_env),
        "metrics": (app, "metrics", off_env),
        "full": (app, "full", full_env),
        "peer": (app, "peer", full_env),
        "storm": (app, "metrics", off_env),
        "scrape-only": (app, "metrics", off_env),
    }
    if base_app:
        configs["metrics@base"] = (base_app, "metrics", off_env)
        configs["full@base"] = (base_app, "full", full_env)
    ports, pids = {}, {}
    for name, (binary, layer, env) in configs.items():
        ports[name] = free_port()
        # A directory of its own: the example's SQLite database is there.
        home = os.path.join(work, name)
        os.makedirs(home)
        log = open(os.path.join(work, f"{name}.log"), "w")  # the access log file
        proc = subprocess.Popen(
            app_cpu + [os.path.abspath(binary), "--listen", f"127.0.0.1:{ports[name]}",
                       "--http-layer", layer],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=home)
        procs.append(proc)
        pids[name] = proc.pid
    for name in configs:
        wait_port(ports[name])
        if name != "scrape-only":
            wrk(ports[name], "2s")  # warm-up

    names = ["off", "metrics", "full", "peer", "storm"] + (["metrics@base", "full@base"] if base_app else [])
    results = {name: [] for name in names}
    cpu = {name: 0.0 for name in names}
    requests = {name: 0 for name in names}
    scrapes = []
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            before = cpu_seconds(pids[name])
            storm = None
            if name == "storm":
                storm = subprocess.Popen(
                    load_cpu + ["wrk", "-t1", "-c1", f"-d{slice_}",
                                f"http://127.0.0.1:{ports[name]}/metrics"],
                    stdout=subprocess.PIPE, text=True)
                procs.append(storm)
            rps, p50, p99, count = wrk(ports[name], slice_)
            if storm is not None:
                out = storm.communicate()[0]
                scrapes.append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))
            cpu[name] += cpu_seconds(pids[name]) - before
            requests[name] += count
            results[name].append((rps, p50, p99))

    # One scrape alone, to know what it costs the app.
    before = cpu_seconds(pids["scrape-only"])
    scrape_rate, _, _, scrape_count = wrk(ports["scrape-only"], slice_, "/metrics", "1")
    if scrape_count == 0:
        sys.exit("load.sh: no scrape of /metrics completed")
    per_scrape = (cpu_seconds(pids["scrape-only"]) - before) / scrape_count
finally:
    stop_all()
    shutil.rmtree(work, ignore_errors=True)


def summary(values, digits=2):
    values = sorted(values)
    if values[0] == values[-1]:
        return f"{values[0]:.{digits}f}"
    median = statistics.median(values)
    if len(values) < 4:
        return f"{median:.{digits}f}"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{median:.{digits}f} ({q1:.{digits}f}-{q3:.{digits}f})"


print(f"{rounds} rounds of {slice_} per configuration, {connections} connections"
      f"{', pinned (apps on CPU 0, wrk and rotel on CPU 1)' if pin else ''}; medians over the "
      "rounds, interquartile range in parentheses; ratios are taken within each round")
print()
print("| configuration | requests/s | p50 | p99 | app CPU per request | throughput vs off | p99 vs off |")
print("|---|---|---|---|---|---|---|")
for name in names:
    rows, offs = results[name], results["off"]
    print(f"| {name} | {statistics.median(r[0] for r in rows):.0f} "
          f"| {statistics.median(r[1] for r in rows):.2f} ms "
          f"| {statistics.median(r[2] for r in rows):.2f} ms "
          f"| {cpu[name] / requests[name] * 1e6:.1f} us "
          f"| {summary([r[0] / o[0] for r, o in zip(rows, offs)])} "
          f"| {summary([r[2] / o[2] for r, o in zip(rows, offs)])} |")

# Against the peer: throughput in the same rounds, and the CPU per request
# each adds over off.
per_request = {name: cpu[name] / requests[name] * 1e6 for name in names}
full_vs_peer = [f[0] / p[0] for f, p in zip(results["full"], results["peer"])]
added_full = per_request["full"] - per_request["off"]
added_peer = per_request["peer"] - per_request["off"]
metrics_vs_off = [m[0] / o[0] for m, o in zip(results["metrics"], results["off"])]
print()
print(f"full vs peer: throughput {summary(full_vs_peer)} (target: above 1); CPU per request "
      f"added over off: full {added_full:.1f} us, peer {added_peer:.1f} us, "
      f"ratio {added_full / added_peer:.2f} (target: at most 0.5); "
      f"metrics vs off {summary(metrics_vs_off)} (target: at least 0.95)")

# The storm's scrapes took this share of the app's CPU; requests should
# slow by about that much and no more (no request waits on rendering).
seconds_per_slice = float(slice_.rstrip("s"))
scrape_share = statistics.median(scrapes) * per_scrape / (cpu["storm"] / (rounds * seconds_per_slice))
storm_vs_metrics = [s[0] / m[0] for s, m in zip(results["storm"], results["metrics"])]
print()
print(f"scrape storm: {statistics.median(scrapes):.0f} scrapes/s of /metrics during the load; "
      f"one scrape costs {per_scrape * 1e6:.0f} us of app CPU, one request "
      f"{cpu['metrics'] / requests['metrics'] * 1e6:.1f} us")
print(f"scrapes took {scrape_share:.0%} of the app's CPU during the storm; request throughput "
      f"was {summary(storm_vs_metrics)} of the metrics-only run's "
      f"(expected from the scrapes' CPU alone: {1 - scrape_share:.2f})")
if base_app:
    print()
    for layer in ("metrics", "full"):
        ratios = [h[0] / b[0] for h, b in zip(results[layer], results[f"{layer}@base"])]
        print(f"{layer}: working tree vs base {summary(ratios)} (throughput, within each round)")
PY
