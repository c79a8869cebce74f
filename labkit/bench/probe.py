"""The inlined lookup's own cost, counted in guest instructions by a bracket probe.

``bench_probe_lookup`` (bpf/bench.bpf.c) creates an element kept in the skb's
extension block, then brackets three things with bpf_ktime_get_ns(): nothing,
the argument set-up of a bpf_skb_storage_get() with flags 0, and that set-up
with the lookup the verifier inlines (kernel patch 0010). In a lab VM that
counts instructions (``Lab(clock="icount")``) a nanosecond is an instruction,
so the differences are exact: the inlined sequence's hit path (lookup - setup)
and the whole call site (lookup - empty). An interrupt that lands inside a
bracket adds its handler to that run: each figure is the fewest over RUNS.

In the guest: ``python -m labkit.bench.probe`` prints the figures as JSON.
From the host: ``run_in(lab)`` (tests/host/test_cost_icount.py,
benchmarks/lookup_probe.py).
"""

import json
import struct
import sys

RUNS = 30
SEQUENCE_BOUND = 20  # guest instructions: what the inlined lookup's hit path may cost


def guest_probe(runs=RUNS) -> dict:
    """Run the probe in this (lab) kernel: {"sequence", "call_site", "found", ...} in the clock's unit."""
    from labkit.bench.designs import INLINE
    from labkit.bpf.build import obj_path
    from labkit.bpf.libbpf import BpfObject
    from labkit.runtime.packets import udp_frame

    with open(INLINE) as fh:
        knob = fh.read().strip()
    rows = []
    with BpfObject(obj_path("bench"), programs=["bench_probe_lookup"]) as obj:
        prog = obj.program("bench_probe_lookup")
        for i in range(runs):
            prog.test_run(udp_frame(i + 1))
            empty, setup, lookup, found = struct.unpack_from("<4Q", obj.section(".data.probe").lookup(b"\0\0\0\0"))
            rows.append((empty, setup, lookup, found))
    empty, setup, lookup = (min(r[k] for r in rows) for k in range(3))
    return {"empty": empty, "setup": setup, "lookup": lookup, "sequence": lookup - setup,
            "call_site": lookup - empty, "found": all(r[3] == 1 for r in rows), "runs": runs,
            "inline_knob": knob == "1"}


def run_in(lab, timeout=300) -> dict:
    """The probe's figures from a running lab VM (a ``labkit.vm.lab.Lab``)."""
    from labkit import paths
    from labkit.errors import LabError

    res = lab.run([sys.executable, "-m", "labkit.bench.probe"], cwd=paths.PROJECT, timeout=timeout)
    if res.code != 0:
        raise LabError(f"the lookup probe failed in the lab VM (status {res.code})",
                       fix="run: labkit bpf build, then again", details=(res.err or res.out)[-3000:])
    return json.loads(res.out.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(guest_probe()))
