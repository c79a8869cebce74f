"""What per-packet data costs: every design, timed by the kernel, in one run.

    .venv/bin/python benchmarks/storage_cost.py                  # 5 repeats of 5000 packets per design
    .venv/bin/python benchmarks/storage_cost.py --packets 1000 --repeats 3

Boots the lab VM and runs ``python -m labkit.bench`` in it (see that module
for the method); writes benchmarks/results/storage-cost-<accel>.json and
prints each design's ns per packet and ratio to the counter-only floor of
the same run, against the targets and the public reference figures.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from labkit import kernel  # noqa: E402
from labkit.benchrun import run_in_vm  # noqa: E402
from labkit.errors import LabError  # noqa: E402
from labkit.vm import Lab, choose_accel  # noqa: E402

# Public figures, for orientation (native hardware, not this VM).
REFERENCE = {
    "skb_storage:write": "RFC: ~330 ns create+write",
    "skb_storage:read": "RFC: ~115 ns lookup+read",
    "floor:write": "later benchmark: 70 ns",
    "floor:read": "later benchmark: 36 ns",
    "stash:write": "later benchmark: 531 ns",
    "stash:read": "later benchmark: 85 ns",
    "stash:cleanup": "later benchmark: 267 ns",
}
TARGETS = {"write": 2.5, "read": 1.3}  # optimised skb storage, ratio to the floor


def table(res) -> str:
    rows = [f"{'design':<22} {'role':<8} {'ns/packet (median, min-max)':<30} {'x floor (median, min-max)':<26} reference"]
    for name, d in res["designs"].items():
        for role, v in d.items():
            if role == "received" or not v.get("ns"):
                continue
            ns, ratio = v["ns"], v.get("ratio")
            r = f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "-"
            ref = REFERENCE.get(f"{name.split(':')[0]}:{role}", "")
            if name == "skb_storage:inline" and role in TARGETS:
                ref = f"target <= {TARGETS[role]}x"
            rows.append(f"{name:<22} {role:<8} {ns['median']:>8.1f} ({ns['min']:.1f}-{ns['max']:.1f}){'':<10} {r:<26} {ref}")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="results file (default benchmarks/results/storage-cost-<accel>.json)")
    args = ap.parse_args()

    kdir = kernel.kernel_path()
    accel, why = choose_accel(kdir)
    t0 = time.monotonic()
    try:
        with Lab(kdir) as lab:
            data = run_in_vm(lab, args.packets, args.repeats, stream=True)
    except LabError as exc:
        raise SystemExit(f"storage_cost: {exc}") from None
    data.update(accel=accel, accel_why=why, cpus_host=os.cpu_count(), wall_s=round(time.monotonic() - t0, 1),
                command=f"benchmarks/storage_cost.py --packets {args.packets} --repeats {args.repeats}",
                kernel_build=kernel.info(kdir))
    out = Path(args.out).resolve() if args.out else PROJECT / "benchmarks" / "results" / f"storage-cost-{accel}.json"
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(table(data))
    if data["problems"]:
        print("\nproblems:\n  " + "\n  ".join(data["problems"]))
    print(f"\n{out.relative_to(PROJECT) if out.is_relative_to(PROJECT) else out} ({data['wall_s']} s)")


if __name__ == "__main__":
    main()
