#!/usr/bin/env bash
# The cores scaling table (issue: "more cores must mean more snapshots"):
# runs `ember-bench --only create` pinned with taskset to 2, 4, 8 and 16
# cores (those the machine has), the bench and the server it starts on the
# same cores, and prints one Markdown table with the disk's own limit
# measured in each run.
#
#   cargo build --release -p ember -p ember-bench
#   scripts/scaling.sh [target/release] [out-dir]
#
# On a machine lent for measurements, carry target/release and run it there.
set -euo pipefail
bin="${1:-target/release}"
out="${2:-target/scaling}"
mkdir -p "$out"
have=$(nproc)
for cores in 2 4 8 16; do
    if (( cores > have )); then
        echo "skipping $cores cores: this machine has $have" >&2
        continue
    fi
    echo "== $cores cores" >&2
    taskset -c "0-$((cores - 1))" "$bin/ember-bench" --ember "$bin/ember" --only create \
        --json "$out/create-$cores.json" >&2
done
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def find(rows, start, has=""):
    for r in rows:
        if r["scenario"].startswith(start) and has in r["scenario"]:
            return r
    return None
cols = [
    ("create → available p50, sequential (ms)", "snapshot create → available, p50 (sequential)", ""),
    ("completed/s, 8 clients", "snapshots completed per second (8 clients)", ""),
    ("completed/s, 32 clients", "snapshots completed per second (32 clients)", ""),
    ("durable creates/s sustained, 32 clients", "durable creates per second, sustained", "(32 clients)"),
    ("durable creates/s sustained, 128 clients", "durable creates per second, sustained", "(128 clients)"),
    ("disk create+fsync/s, 64 threads", "disk limit: file create + fsync per second (64 threads)", ""),
]
print("| cores | " + " | ".join(c for c, _, _ in cols) + " | 128 clients ÷ disk |")
print("|---|" + "---:|" * (len(cols) + 1))
for cores in (2, 4, 8, 16):
    path = os.path.join(out, f"create-{cores}.json")
    if not os.path.exists(path):
        continue
    rows = json.load(open(path))
    cells = []
    for _, start, has in cols:
        r = find(rows, start, has)
        cells.append("—" if r is None else f"{r['value']:.2f}" if r["unit"] == "ms" else f"{r['value']:.0f}")
    r128 = find(rows, "durable creates per second, sustained", "(128 clients)")
    disk = find(rows, "disk limit: file create + fsync per second (64 threads)")
    ratio = f"{r128['value'] / disk['value']:.2f}" if r128 and disk and disk["value"] else "—"
    print(f"| {cores} | " + " | ".join(cells) + f" | {ratio} |")
PY
