#!/usr/bin/env bash
# Local scale-out bench (docs/developer/performance.md, "Shards on one machine"): one `fleetstorm mock`
# process, and the same scenario run unsharded and as 2 and 4 shard processes against it (one
# `--start-at`, the mock restarted with a fresh registry for each), each sharded run merged with
# `fleetstorm merge`. Prints per configuration: devices provisioned, provisioned/s over the
# provisioning window, total and register_thing p50/p99, and the shard processes' CPU per
# provisioned device (the mock's not included).
#
#   benches/shards.sh [DEVICES] [RATE] [SHARD COUNTS...]      (default: 6000 1500 1 2 4)
#
# Loopback only; each configuration takes DEVICES / RATE seconds plus a few of start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
devices="${1:-6000}"
rate="${2:-1500}"
shift $(( $# > 2 ? 2 : $# ))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 4)

cargo build --release --quiet --bin fleetstorm
bin="$PWD/target/release/fleetstorm"
work="$(mktemp -d)"
mock_pid=""
trap '[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null; rm -rf "$work"' EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

seconds=$(( (devices + rate - 1) / rate ))
cat >"$work/shards.toml" <<EOF
# The bench's scenario: CSR path, P-256 keys, a constant arrival rate.
name = "shards-bench"
seed = 11
max_in_flight = 4000
[target]
kind = "mock"
pki = "$work/pki"
[devices]
count = $devices
client_id = "shb-{seq:07}"
certificate = "csr"
csr_key = "p256"
[devices.parameters]
SerialNumber = "123456{seq:07}"
DeviceName = "shb-{seq}"
DeviceLocation = "{pick:Berlin=3,Seattle=1}"
[[schedule]]
executor = "constant-arrival-rate"
rate = $rate
duration = "${seconds}s"
EOF

printf '%-7s %12s %16s %22s %22s %17s\n' shards provisioned "provisioned/s" "total p50/p99 ms" "register p50/p99 ms" "devices CPU/flow"
for n in "${counts[@]}"; do
  port="$(free_port)"
  rm -rf "$work/pki"
  "$bin" mock --listen "127.0.0.1:$port" --pki "$work/pki" --keys p256 --log warn \
    >"$work/mock-$n.log" 2>&1 &
  mock_pid=$!
  for _ in $(seq 100); do
    grep -q "127.0.0.1:$port" "$work/mock-$n.log" 2>/dev/null && break
    sleep 0.1
  done
  start_at="$(date -u -d '+3 seconds' +%Y-%m-%dT%H:%M:%SZ)"
  pids=()
  for ((i = 0; i < n; i++)); do
    "$bin" run "$work/shards.toml" --no-tui --shard "$i/$n" --start-at "$start_at" \
      --endpoint "127.0.0.1:$port" --out "$work/$n/shard-$i" >"$work/run-$n-$i.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  kill "$mock_pid"; wait "$mock_pid" 2>/dev/null || true; mock_pid=""
  dir="$work/$n/shard-0"
  if [ "$n" -gt 1 ]; then
    "$bin" merge "$work/$n"/shard-* --out "$work/$n/merged" >/dev/null
    dir="$work/$n/merged"
  fi
  python3 - "$dir" "$work/$n" "$n" <<'EOF'
import csv, glob, json, sys
d, root, n = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(f"{d}/summary.json"))
st = s["stages"]
# CPU seconds of every shard process (timeseries.csv: percent of one core per interval).
cpu, prev = 0.0, 0.0
for ts in glob.glob(f"{root}/shard-*/timeseries.csv"):
    prev = 0.0
    for row in csv.DictReader(open(ts)):
        t = float(row["t_s"]) if "t_s" in row else float(row["elapsed_s"])
        cpu += float(row.get("cpu_percent") or 0) / 100 * (t - prev)
        prev = t
per_flow = cpu / max(s["devices"]["provisioned"], 1) * 1e6
print(f'{n:<7} {s["devices"]["provisioned"]:>12} {s["throughput"]["provisioned_per_s"]:>16.0f} '
      f'{st["total"]["p50_ms"]:>10.1f}/{st["total"]["p99_ms"]:<11.1f} '
      f'{st["register_thing"]["p50_ms"]:>10.1f}/{st["register_thing"]["p99_ms"]:<11.1f} {per_flow:>12.0f} µs')
EOF
done
