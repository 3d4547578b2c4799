#!/usr/bin/env bash
# Real HTTP load on two builds of the marketplace example side by side: did a
# change make the service faster under load? Builds the example at BASE (a
# commit) and at the working tree, starts `off` (working tree), `metrics` and
# `full` of both builds as separate processes (the configurations of
# scripts/load.sh), and loads each for one SLICE per round, in an order that
# rotates. Prints each one's throughput against the same round's `off`, and
# the working tree against BASE, as medians over the rounds with the
# interquartile range.
#
#   bash scripts/load-ab.sh HEAD~3                   # 20 rounds of 2 s
#   ROUNDS=40 PIN=1 bash scripts/load-ab.sh 83eecdf  # apps on CPU 0, wrk on CPU 1
#
# On a shared machine throughput drifts by 10-15 % between runs of one
# build; only two builds loaded in the same rounds show a few percent, and
# even then an unchanged path (`metrics` when only tracing changed) shows the
# noise. For small changes, count instructions instead
# (scripts/app-instructions.sh).
#
# Needs git, wrk and rotel (as scripts/load.sh). Everything listens on
# 127.0.0.1; every process it starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ]; then
  echo "usage: $0 BASE   (a commit to compare the working tree with)" >&2
  exit 2
fi
base=$(git rev-parse --verify "$1^{commit}")
command -v wrk >/dev/null || { echo "load-ab.sh: wrk is missing; run scripts/load.sh once (it installs wrk) or apt-get install -y wrk" >&2; exit 1; }
bash scripts/install-test-tools.sh >/dev/null
ROTEL="${ROTEL_AGENT:-$(ls .venv/lib/python*/site-packages/rotel/rotel-agent | head -n1)}"

work=$(mktemp -d)
tree="$work/base"
cleanup() {
  git worktree remove --force "$tree" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The base build shares target/ (only the changed crates rebuild); each
# binary is copied out before the next build replaces it.
repo=$PWD
git worktree add -q --detach "$tree" "$base"
(cd "$tree" && CARGO_TARGET_DIR="$repo/target" cargo build --release --example marketplace -q)
cp target/release/examples/marketplace "$work/marketplace-base"
cargo build --release --example marketplace -q
cp target/release/examples/marketplace "$work/marketplace-head"

# Not `exec`: the worktree is removed when Python is done.
ROTEL="$ROTEL" WORK="$work" python3 - <<'PY'
import os, re, signal, socket, statistics, subprocess, sys, time

rotel, work = os.environ["ROTEL"], os.environ["WORK"]
rounds = int(os.environ.get("ROUNDS", "20"))
slice_ = os.environ.get("SLICE", "2s")
if not re.fullmatch(r"[1-9][0-9]*s", slice_):
    sys.exit(f"load-ab.sh: SLICE is whole seconds, like 2s, not {slice_!r}")
pin = os.environ.get("PIN", "0") == "1"
app_cpu, load_cpu = (["taskset", "-c", "0"], ["taskset", "-c", "1"]) if pin else ([], [])
procs = []


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
    sys.exit(f"load-ab.sh: nothing listens on port {port}")


def wrk(port, duration):
    out = subprocess.run(
        load_cpu + ["wrk", "-t1", "-c32", f"-d{duration}", f"http://127.0.0.1:{port}/api/v1/products/"],
        capture_output=True, text=True, check=True).stdout
    return int(re.search(r"(\d+) requests in", out).group(1))


def summary(values):
    q = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.3f} ({q[0]:.2f}-{q[2]:.2f})"


try:
    grpc, http = free_port(), free_port()
    procs.append(subprocess.Popen(
        load_cpu + [rotel, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc}",
                    "--otlp-http-endpoint", f"127.0.0.1:{http}", "--exporter", "blackhole"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_port(grpc)
    off_env = {"OTEL_SDK_DISABLED": "true"}
    full_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{grpc}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    configs = {"off": ("head", "off", off_env)}
    for layer, env in (("metrics", off_env), ("full", full_env)):
        for build in ("base", "head"):
            configs[f"{layer}-{build}"] = (build, layer, env)
    ports = {}
    for name, (build, layer, env) in configs.items():
        ports[name] = free_port()
        log = open(os.path.join(work, f"{name}.log"), "w")
        procs.append(subprocess.Popen(
            app_cpu + [os.path.join(work, f"marketplace-{build}"), "--listen",
                       f"127.0.0.1:{ports[name]}", "--http-layer", layer],
            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
    for name in configs:
        wait_port(ports[name])
        wrk(ports[name], "2s")  # warm-up

    names = list(configs)
    done = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            done[name].append(wrk(ports[name], slice_))

    print(f"{rounds} rounds of {slice_}{', pinned' if pin else ''}; medians over the rounds, "
          "interquartile range in parentheses")
    for name in names[1:]:
        print(f"{name:12} vs off: {summary([a / b for a, b in zip(done[name], done['off'])])}")
    for layer in ("metrics", "full"):
        ratios = [a / b for a, b in zip(done[f"{layer}-head"], done[f"{layer}-base"])]
        print(f"{layer:12} working tree vs base: {summary(ratios)}")
finally:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
PY
