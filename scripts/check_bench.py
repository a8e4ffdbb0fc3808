#!/usr/bin/env python3
"""Checks that an `ember-bench --json` file is a well-formed table: every
row named, with a finite non-negative value and a unit, every reference
named with a positive value and a ratio, and every scenario group present.
It never judges a figure: benchmarks are not timed assertions."""
import json
import math
import sys

REQUIRED = [
    "resident memory, idle after start",
    "snapshot create → available, p50 (sequential)",
    "durable creates per second, sustained",
    "snapshot create → available, 1 TiB volume",
    "snapshot delete, ",
    "read 4 KiB at the bottom of 128 snapshots",
    "start-up to first answer",
    "GET snapshots/detail, page of 1000",
]


def main(path):
    rows = json.load(open(path))
    problems = []
    if not isinstance(rows, list) or not rows:
        problems.append("no rows")
        rows = []
    for i, r in enumerate(rows):
        where = f"row {i} ({r.get('scenario')!r})"
        if not isinstance(r.get("scenario"), str) or not r["scenario"]:
            problems.append(f"{where}: no scenario")
        v = r.get("value")
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            problems.append(f"{where}: value {v!r}")
        if not isinstance(r.get("unit"), str) or not r["unit"]:
            problems.append(f"{where}: no unit")
        ref = r.get("reference")
        if ref is not None:
            rv = ref.get("value") if isinstance(ref, dict) else None
            if not (isinstance(ref, dict) and ref.get("name")
                    and isinstance(rv, (int, float)) and rv > 0):
                problems.append(f"{where}: reference {ref!r}")
            ratio = r.get("ratio")
            if not isinstance(ratio, (int, float)) or not math.isfinite(ratio):
                problems.append(f"{where}: ratio {ratio!r}")
    names = [r.get("scenario", "") for r in rows]
    for prefix in REQUIRED:
        if not any(n.startswith(prefix) for n in names):
            problems.append(f"missing scenario {prefix!r}")
    if problems:
        print("ember-bench table is not well-formed:", *problems, sep="\n  ")
        return 1
    print(f"ember-bench table well-formed: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
