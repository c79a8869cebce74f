"""What per-packet data costs: every design, measured by the kernel, in one run.

    .venv/bin/python benchmarks/storage_cost.py                  # 5 repeats of 5000 packets per design
    .venv/bin/python benchmarks/storage_cost.py --packets 2000 --repeats 3 --measure icount

Boots the lab VM and runs ``python -m labkit.bench.run`` in it (``labkit.bench.storage``
for the method); writes benchmarks/results/storage-cost-<measure>.json and
prints each design's cost per packet and ratio to the counter-only floor of
the same run, against the targets and the public reference figures.

--measure: ``icount`` counts guest instructions (``Lab(clock="icount")``:
single-threaded TCG, one vCPU, 1 ns of guest time per instruction), the same
on any machine; ``tcg`` times in ns under TCG (2 vCPUs, wall clock); ``kvm``
times in ns under KVM. The default is kvm where ``choose_accel`` picks KVM,
icount everywhere else.
"""

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from labkit import kernel  # noqa: E402
from labkit.bench.plot import table_text, unit  # noqa: E402
from labkit.bench.run import run_in_vm  # noqa: E402
from labkit.errors import LabError  # noqa: E402
from labkit.vm.lab import Lab, choose_accel  # noqa: E402

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
MEASURES = ("icount", "tcg", "kvm")


def lab_options(measure, kdir) -> dict:
    """Lab() keyword arguments for a measure; SystemExit for KVM where it cannot run."""
    if measure == "icount":
        return {"clock": "icount"}
    if measure == "kvm":
        accel, why = choose_accel(kdir)
        if accel != "kvm":
            raise SystemExit(f"storage_cost: --measure kvm needs KVM, and this machine runs TCG ({why}); "
                             "use --measure icount (instructions) or --measure tcg")
    return {"accel": measure}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--measure", choices=MEASURES,
                    help="icount: guest instructions; tcg, kvm: ns (default: kvm where KVM works, else icount)")
    ap.add_argument("--out", help="results file (default benchmarks/results/storage-cost-<measure>.json)")
    args = ap.parse_args()

    try:
        kdir = kernel.kernel_path()
        measure = args.measure or ("kvm" if choose_accel(kdir)[0] == "kvm" else "icount")
        t0 = time.monotonic()
        with Lab(kdir, **lab_options(measure, kdir)) as lab:
            accel, why = lab.accel, lab.accel_why or f"--measure {measure}"
            data = run_in_vm(lab, args.packets, args.repeats, stream=True)
    except LabError as exc:
        raise SystemExit(f"storage_cost: {exc}") from None
    # when: the host's clock (an icount guest's wall clock runs ahead of real time)
    data.update(measure=measure, accel=accel, accel_why=why, cpus_host=os.cpu_count(),
                when=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                wall_s=round(time.monotonic() - t0, 1), kernel_build=kernel.info(kdir),
                command=f"benchmarks/storage_cost.py --packets {args.packets} --repeats {args.repeats} "
                        f"--measure {measure}")
    out = Path(args.out).resolve() if args.out else PROJECT / "benchmarks" / "results" / f"storage-cost-{measure}.json"
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(table_text(data, REFERENCE))
    print("\n" + textwrap.fill(f"Unit: {unit(data)}. " + data["notes"]["unit"], 100))
    if data["problems"]:
        print("\nproblems:\n  " + "\n  ".join(data["problems"]))
    print(f"\n{out.relative_to(PROJECT) if out.is_relative_to(PROJECT) else out} ({data['wall_s']} s)")


if __name__ == "__main__":
    main()
