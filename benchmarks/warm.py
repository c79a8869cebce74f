"""A lab VM from its warm snapshot against a cold boot, in one run.

    .venv/bin/python benchmarks/warm.py            # 5 of each, alternating (about 3 minutes)
    .venv/bin/python benchmarks/warm.py --runs 9

Measures, alternating cold and warm so both see the same machine load:
- the request to a VM whose scenario worker can run a scenario (``Session()``
  started: the VM booted or restored, the worker started or forked warm);
- the first scenario run after that (``basic``, 10 UDP packets);
- making the snapshot (into a fresh folder: nothing cached), its size, and
  the guest memory it holds.

Writes benchmarks/results/warm-<host>.json and prints a summary.
Measurements, not tests: nothing here fails on a slow machine.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from runtime import spread  # noqa: E402 - benchmarks/runtime.py's summary of repeated timings

from labkit import kernel, scenarios  # noqa: E402
from labkit.progress import Progress  # noqa: E402
from labkit.runtime.session import Session  # noqa: E402
from labkit.vm import warmbuild  # noqa: E402
from labkit.vm.lab import Lab, choose_accel  # noqa: E402


def one(snapshot: bool) -> dict:
    t0 = time.monotonic()
    with Lab(snapshot=snapshot) as lab, Session(lab=lab) as s:
        ready = time.monotonic() - t0
        assert bool(s.lab.warm) == snapshot, s.lab.warm_why
        t1 = time.monotonic()
        s.run(scenarios.get("basic"))
        first = time.monotonic() - t1
        return {"ready_s": ready, "vm_s": s.lab.boot_seconds, "worker_s": s.ready.get("start_s"),
                "first_run_s": first}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    kdir = kernel.kernel_path()
    accel, _ = choose_accel(kdir)
    out = {"host": platform.node(), "accel": accel, "date": time.strftime("%Y-%m-%d"),
           "kernel": json.loads((kdir / "build.json").read_text()).get("release")}

    fresh = Path(tempfile.mkdtemp(prefix="labkit-warm-bench-"))
    os.environ["LABKIT_SNAPSHOTS"] = str(fresh)
    try:
        t0 = time.monotonic()
        snap = warmbuild.build(kdir, kdir / "vmlinux", accel=accel, cpus=2, memory="1G",
                               progress=Progress(quiet=True))
        m = snap.manifest
        out["snapshot"] = {"build_s": round(time.monotonic() - t0, 1), "state_mb": round(m["state_bytes"] / 1e6, 1),
                           "guest_mem_used_mb": round(m["guest_mem_used_kb"] / 1024, 1), "files": len(m["files"])}
        print(f"snapshot: made in {out['snapshot']['build_s']} s, {out['snapshot']['state_mb']} MB", flush=True)
        rows = {"cold": [], "warm": []}
        one(True)  # the state file in the page cache, as on any machine that restored once
        for i in range(args.runs):
            for name in ("cold", "warm"):
                rows[name].append(one(name == "warm"))
                r = rows[name][-1]
                print(f"{name} {i + 1}: ready {r['ready_s']:.2f} s (vm {r['vm_s']:.2f}, worker {r['worker_s']}), "
                      f"first run {r['first_run_s']:.2f} s", flush=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    for name, rs in rows.items():
        out[name] = {k: spread([r[k] for r in rs]) for k in rs[0]}
    out["ready_ratio"] = round(out["cold"]["ready_s"]["median"] / out["warm"]["ready_s"]["median"], 1)
    dest = PROJECT / "benchmarks" / "results" / f"warm-{platform.node()}.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("snapshot", "ready_ratio")}, indent=1))
    print(f"cold ready {out['cold']['ready_s']['median']} s, warm ready {out['warm']['ready_s']['median']} s; "
          f"written to {dest}")


if __name__ == "__main__":
    main()
