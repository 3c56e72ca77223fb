#!/usr/bin/env bash
# Peak memory of `fleetstorm merge` per device (docs/developer/performance.md, "Merge memory": the
# figure `k8s render` sizes the merge Job from). One small real run against the embedded mock
# gives a template folder; from it, SHARDS shard folders of DEVICES devices in all are written
# (devices.csv and created.csv as a run writes them, every cell of the template's rows with the
# device's own seq, client ID, thing name and certificate ID; summary.json, timeseries.csv and
# latency.hlog the template's), then merged under `/usr/bin/time -v`. Prints the peak RSS and
# bytes per device.
#
#   benches/merge_memory.sh [DEVICES] [SHARDS]      (default: 1000000 25)
#
# Loopback only. At 1,000,000 devices: ~1 GB of shard files in a temporary folder, a minute or
# two of CPU, and the merge's peak memory (GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
devices="${1:-1000000}"
shards="${2:-25}"

cargo build --release --quiet --bin fleetstorm
bin="$PWD/target/release/fleetstorm"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat >"$work/template.toml" <<'EOF'
name = "merge-memory"
seed = 1
[target]
kind = "mock"
[target.mock]
keys = "p256"
[devices]
count = 20
client_id = "mm-{seq:07}"
certificate = "csr"
[devices.parameters]
SerialNumber = "55{seq:07}"
DeviceName = "thing-{seq:07}"
DeviceLocation = "Berlin"
[[schedule]]
executor = "constant-arrival-rate"
rate = 20
duration = "1s"
EOF
"$bin" run "$work/template.toml" --no-tui --run-id mergemem --out "$work/template" >/dev/null 2>&1

python3 - "$work" "$devices" "$shards" <<'EOF'
import csv, hashlib, json, os, shutil, sys
work, devices, shards = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
template = os.path.join(work, "template")
def rows(name):
    with open(os.path.join(template, name), newline="") as f:
        r = csv.reader(f)
        return next(r), list(r)
dev_header, dev_rows = rows("devices.csv")
cr_header, cr_rows = rows("created.csv")
seq_col, client_col, thing_col = (dev_header.index(c) for c in ("seq", "client_id", "thing_name"))
dev_row = dev_rows[0]
first_client = dev_row[client_col]
cert_row = next(r for r in cr_rows if r[cr_header.index("thing_name")] == "")
thing_row = next(r for r in cr_rows if r[cr_header.index("thing_name")] != "")
summary = json.load(open(os.path.join(template, "summary.json")))
for i in range(shards):
    d = os.path.join(work, f"shard-{i}")
    os.makedirs(d)
    for f in ("summary.json", "timeseries.csv", "latency.hlog", "failures.csv", "scenario.toml"):
        shutil.copy(os.path.join(template, f), d)
    seqs = range(i, devices, shards)
    s = dict(summary)
    s["shard"] = {"index": i, "count": shards, "start_at": None, "start_lag_s": 0.0}
    s["devices"] = dict(summary["devices"], planned=len(seqs), started=len(seqs), provisioned=len(seqs))
    json.dump(s, open(os.path.join(d, "summary.json"), "w"))
    with open(os.path.join(d, "devices.csv"), "w", newline="") as fd, \
         open(os.path.join(d, "created.csv"), "w", newline="") as fc:
        wd, wc = csv.writer(fd, lineterminator="\n"), csv.writer(fc, lineterminator="\n")
        wd.writerow(dev_header)
        wc.writerow(cr_header)
        for seq in seqs:
            client, thing = f"mm-{seq:07}", f"thing-{seq:07}"
            row = list(dev_row)
            row[seq_col], row[client_col], row[thing_col] = str(seq), client, thing
            wd.writerow(row)
            cert = hashlib.sha256(str(seq).encode()).hexdigest()
            for t in (cert_row, thing_row):
                r = [c.replace(first_client, client) for c in t]
                r[cr_header.index("certificate_id")] = cert
                if r[cr_header.index("thing_name")]:
                    r[cr_header.index("thing_name")] = thing
                wc.writerow(r)
EOF

du -sh "$work" | sed 's/^/shard folders: /'
args=()
for i in $(seq 0 $((shards - 1))); do args+=("$work/shard-$i"); done
/usr/bin/time -v "$bin" merge "${args[@]}" --out "$work/merged" >/dev/null 2>"$work/time.txt" || true
grep -E "Maximum resident|Elapsed|User time|System time|Exit status" "$work/time.txt"
kib=$(awk '/Maximum resident/ {print $NF}' "$work/time.txt")
python3 -c "k=$kib; print(f'peak RSS {k/1024:.0f} MiB for $devices devices: {k*1024/$devices:.0f} bytes per device')"
wc -l "$work/merged/devices.csv" "$work/merged/created.csv"
