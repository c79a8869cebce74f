"""The storage benchmark's designs: which programs make each (``bpf/bench.bpf.c``), what each is
compared with, the runs of one repeat (``plan``) and the figures a run gives (``summarise``).
``labkit.bench.storage`` runs them in the guest."""

from __future__ import annotations

import os
import statistics
import time

from labkit.errors import LabError

INLINE = "/proc/sys/kernel/bpf_skb_storage_inline"


class BenchError(LabError):
    """The benchmark could not run or gave figures that cannot be trusted."""


def inline_available() -> bool:
    return os.path.exists(INLINE)


# design -> [(role, program, where)]; "floor" runs first in the first repeat
DESIGNS = {
    "floor": [("write", "bench_floor_w", "tc"), ("read", "bench_floor_r", "cgroup")],
    "skb_storage": [("write", "bench_storage_w", "tc"), ("read", "bench_storage_r", "cgroup")],
    "stash": [("write", "bench_stash_w", "tc"), ("read", "bench_stash_r", "cgroup"),
              ("cleanup", "bench_stash_clean", "trace"), ("cleanup", "bench_stash_clean_drop", "trace")],
    "mark": [("write", "bench_mark_w", "tc"), ("read", "bench_mark_r", "cgroup")],
    "data_meta": [("write", "bench_meta_w", "xdp"), ("read", "bench_meta_r", "tc")],
    "floor_xdp": [("write", "bench_floor_x", "xdp")],  # a device takes one XDP program: a run of its own
    # What came after the RFC (kernel patches 0011 and 0012): the metadata buffer, and the stash on
    # the gated tracepoints, whose copy per clone is timed in a run of its own that clones every packet.
    "skb_ext": [("write", "bench_ext_w", "tc"), ("read", "bench_ext_r", "cgroup")],
    "gated": [("write", "bench_gated_w", "tc"), ("read", "bench_gated_r", "cgroup"),
              ("cleanup", "bench_gated_free", "trace")],
    "gated_clone": [("write+clone", "bench_gated_wc", "tc"), ("copy", "bench_gated_copy", "trace"),
                    ("cleanup", "bench_gated_free", "trace")],
}
# The tc floor plus exactly N instructions (bpf/bench.bpf.c): under icount, N more per run than the floor.
CALIBRATION = {"floor+16": [("write", "bench_cal16_w", "tc")], "floor+64": [("write", "bench_cal64_w", "tc")]}
# what each program is compared with: (design, program) of the same repeat
REF = {"write": ("floor", "bench_floor_w"), "read": ("floor", "bench_floor_r"), "cleanup": ("floor", "bench_floor_w"),
       "copy": ("floor", "bench_floor_w"), "write+clone": ("floor", "bench_floor_w")}
REF_PROG = {"bench_meta_w": ("floor_xdp", "bench_floor_x"), "bench_meta_r": ("floor", "bench_floor_w")}
# index in the counts map (bpf/bench.bpf.c enum)
COUNT = {"bench_floor_w": 0, "bench_floor_r": 1, "bench_floor_x": 2, "bench_storage_w": 3, "bench_storage_r": 4,
         "bench_stash_w": 5, "bench_stash_r": 6, "bench_stash_clean": 7, "bench_stash_clean_drop": 7,
         "bench_mark_w": 8, "bench_mark_r": 9, "bench_meta_w": 10, "bench_meta_r": 11, "bench_cal16_w": 12,
         "bench_cal64_w": 13, "bench_ext_w": 14, "bench_ext_r": 15, "bench_gated_w": 16, "bench_gated_r": 17,
         "bench_gated_free": 18, "bench_gated_copy": 19, "bench_gated_wc": 20}
# The programs BPF_PROG_TEST_RUN times on one frame (REPORT_NOTES)
TEST_RUN = ("bench_floor_w", "bench_storage_w", "bench_stash_w", "bench_mark_w", "bench_ext_w", "bench_gated_w",
            "bench_floor_r", "bench_storage_r", "bench_stash_r", "bench_mark_r", "bench_ext_r", "bench_gated_r",
            "bench_floor_x", "bench_meta_w", "bench_meta_r")
REPORT_NOTES = {
    "test_run": "BPF_PROG_TEST_RUN runs a program `repeat` times on one skb it builds once: skb storage "
                "create+write creates on the first run and finds the element on the others, and lookup+read "
                "finds nothing (the skb is fresh), so these figures time the kfunc call paths, not the "
                "allocation; the bpf_stats figures are the per-packet ones.",
}



def plan(designs=None) -> list:
    """The runs of one repeat, [(design, inline knob value or None)]: the floor first."""
    variants = {"skb_storage:plain": [("skb_storage", "0")], "skb_storage:inline": [("skb_storage", "1")]}
    if not inline_available():
        variants = {"skb_storage:plain": [("skb_storage", None)]}
    variants["skb_storage"] = [v for vs in variants.values() for v in vs]
    runs = [("floor", None)]
    for name in designs or [d for d in DESIGNS if d != "floor"]:
        if name not in variants and name not in DESIGNS and name not in CALIBRATION:
            raise BenchError(f"no design {name!r} in the benchmark on this kernel",
                             fix=f"use one of: {', '.join([*DESIGNS, *variants, *CALIBRATION])}")
        runs += [r for r in variants.get(name, [(name, None)]) if r not in runs]
    return runs


def spread(values, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def summarise(samples, test_runs, packets, repeats) -> dict:
    """Per design and role: ns per packet (median, min, max over repeats) and
    the ratio to the floor of the same repeat; plus sanity checks."""
    designs = {}
    problems = []
    for name, reps in samples.items():
        roles = {}
        for r_i, rep in enumerate(reps):
            per_role = {}  # a role's programs together (the stash's two cleanup tracepoints)
            for prog, p in rep["programs"].items():
                t, n, first = per_role.get(p["role"], (0, 0, prog))
                per_role[p["role"]] = (t + (p["ns"] or 0) * p["runs"], n + p["runs"], first)
            for role_name, (t, n, first) in per_role.items():
                role = roles.setdefault(role_name, {"programs": set(), "ns": [], "ratio": []})
                ns = t / n if n else None
                role["ns"].append(ns)
                ref_design, ref_prog = REF_PROG.get(first, REF[role_name])
                base = samples[ref_design][r_i]["programs"][ref_prog]["ns"]
                if ns and base:
                    role["ratio"].append(ns / base)
            for prog, p in rep["programs"].items():
                roles[p["role"]]["programs"].add(prog)
                if p["role"] == "read" and name != "floor" and p["found"] < 0.95 * p["seen"]:
                    problems.append(f"{name}: {prog} found the data on {p['found']} of {p['seen']} packets")
                if p["role"] == "copy" and p["found"] < 0.95 * p["runs"]:
                    problems.append(f"{name}: {prog} found the parent's entry on {p['found']} of {p['runs']} copies")
                if p["failed"]:
                    problems.append(f"{name}: {prog} failed {p['failed']} times")
                if p["role"] in ("write", "read", "write+clone") and p["runs"] < 0.95 * packets:
                    problems.append(f"{name}: {prog} ran {p['runs']} times for {packets} packets")
        designs[name] = {role: {"programs": sorted(v["programs"]), "ns": spread(v["ns"]),
                                "ratio": spread(v["ratio"], 2)} for role, v in roles.items()}
        designs[name]["received"] = [r["received"] for r in reps]
    return {"packets": packets, "repeats": repeats, "designs": designs, "test_run": test_runs,
            "problems": problems, "notes": REPORT_NOTES, "kernel": os.uname().release,
            "inline_knob": inline_available(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

