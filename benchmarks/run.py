"""Foundation timings: cached kernel build, VM boot to command, the lab test tier.

    .venv/bin/python benchmarks/run.py            # the quick ones (about 2 minutes)
    .venv/bin/python benchmarks/run.py --cold     # also a cold kernel build (5-8 minutes)

Writes benchmarks/results/foundation-<host>.json and prints a table.
These are measurements, not tests: nothing here fails on a slow machine.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from labkit import kernel  # noqa: E402
from labkit.vm.lab import Lab, choose_accel  # noqa: E402

LABKIT = [sys.executable, "-m", "labkit.cli"]


def timed(argv, env=None, cwd=PROJECT):
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return dt


def spread(values):
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": len(values)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", action="store_true", help="also time a kernel build into an empty cache")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    kdir = kernel.kernel_path()
    accel, why = choose_accel(kdir)
    results = {"host": platform.node(), "cpus": os.cpu_count(), "accel": accel, "accel_why": why,
               "kernel": kernel.info(kdir), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    print("cached `labkit kernel build` ...", flush=True)
    results["kernel_build_cached_s"] = spread([timed(LABKIT + ["kernel", "build"]) for _ in range(args.repeat)])

    print("`labkit vm run -- true` (boot, run, power off) ...", flush=True)
    results["vm_run_true_s"] = spread([timed(LABKIT + ["vm", "run", "--", "true"]) for _ in range(args.repeat)])

    print("boot to agent ready, and one command in a running VM ...", flush=True)
    boots, cmds = [], []
    for _ in range(args.repeat):
        with Lab() as lab:
            boots.append(lab.boot_seconds)
            t0 = time.monotonic()
            lab.run(["true"])
            cmds.append(time.monotonic() - t0)
    results["boot_to_ready_s"] = spread(boots)
    results["command_in_running_vm_s"] = spread(cmds)

    print("lab test tier (`labkit vm run -- python -m pytest tests/lab -q`) ...", flush=True)
    results["lab_tier_s"] = spread([timed(LABKIT + ["vm", "run", "--", sys.executable, "-m", "pytest",
                                                    "tests/lab", "-q"]) for _ in range(2)])

    out = PROJECT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"foundation-{platform.node()}.json"
    if args.cold:
        print("cold kernel build into an empty cache ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="labkit-cold-") as cache:
            results["kernel_build_cold_s"] = round(timed(LABKIT + ["kernel", "build"],
                                                         env={"LABKIT_CACHE": cache}), 1)
            results["kernel_build_cold_when"] = results["when"]
    elif path.exists():
        # A quick run keeps the last cold figure (and says when it was taken).
        previous = json.loads(path.read_text())
        for key in ("kernel_build_cold_s", "kernel_build_cold_when"):
            if key in previous:
                results[key] = previous[key]
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
