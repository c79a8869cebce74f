"""Runtime timings: scenario runs through the warm worker in one lab VM.

    .venv/bin/python benchmarks/runtime.py              # everything, 1000 runs (about 15 minutes)
    .venv/bin/python benchmarks/runtime.py --runs 100   # a shorter soak

Measures, with the VM booted once:
- boot to agent ready, and to scenario worker ready;
- one scenario run (``basic``, 10 UDP packets: topology, programs, traffic,
  events back to the host), repeated, with the guest's own breakdown;
- every scenario variant of the library once;
- N runs in a row, sampling the worker's open fds and RSS and the guest's
  used memory every 50 runs: they must stay flat.

Writes benchmarks/results/runtime-<host>.json and prints a summary.
Measurements, not tests: nothing here fails on a slow machine.
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from labkit import scenarios  # noqa: E402
from labkit.runtime.session import Session  # noqa: E402
from labkit.vm.lab import Lab  # noqa: E402


def spread(values):
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "runs": len(values)}


def ten_packets():
    sc = scenarios.get("basic")
    return dataclasses.replace(sc, packets=(dataclasses.replace(sc.packets[0], count=10),))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs in the soak (default 1000)")
    ap.add_argument("--repeat", type=int, default=20, help="repeats of the one-scenario timing")
    args = ap.parse_args()

    res = {"host": platform.node(), "cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t0 = time.monotonic()
    lab = Lab()
    lab.start()
    res["accel"] = lab.accel
    res["boot_to_agent_s"] = round(lab.boot_seconds, 2)
    s = Session(lab)
    try:
        s.start()
        res["boot_to_worker_s"] = round(time.monotonic() - t0, 2)
        res["worker_imports_s"] = s.ready.get("start_s")
        print(f"boot to agent {res['boot_to_agent_s']} s, to worker ready {res['boot_to_worker_s']} s", flush=True)

        sc = ten_packets()
        s.run(sc)  # the first run loads the observer
        times, parts = [], []
        for _ in range(args.repeat):
            t = time.monotonic()
            log = s.run(sc)
            times.append(time.monotonic() - t)
            parts.append(log.header["timings"])
            assert log.packets() == list(range(1, 11)), log.timeline()
        res["one_scenario_10_packets_s"] = spread(times)
        res["one_scenario_guest_breakdown_s"] = {k: round(statistics.median(p[k] for p in parts), 3)
                                                 for k in parts[0]}
        print(f"one scenario, 10 packets: {res['one_scenario_10_packets_s']}", flush=True)

        each = {}
        t = time.monotonic()
        for name, params in scenarios.variants():
            t1 = time.monotonic()
            s.run(scenarios.get(name, **params))
            each["-".join([name, *map(str, params.values())])] = round(time.monotonic() - t1, 3)
        res["all_scenarios_s"] = round(time.monotonic() - t, 2)
        res["each_scenario_s"] = each
        print(f"all {len(each)} scenario variants: {res['all_scenarios_s']} s", flush=True)

        samples = []
        t = time.monotonic()
        for i in range(args.runs):
            s.run(sc)
            if i % 50 == 0 or i == args.runs - 1:
                st = s.state()
                samples.append({"run": i + 1, "fds": st["fds"], "worker_rss_kb": st["rss_kb"],
                                "guest_used_kb": st["mem_used_kb"], "lab_netns": len(st["netns"]),
                                "lab_links": len(st["links"])})
                print(f"  run {i + 1}: {samples[-1]}", flush=True)
        res["soak"] = {"runs": args.runs, "seconds": round(time.monotonic() - t, 1), "samples": samples,
                       "fds_first_last": [samples[0]["fds"], samples[-1]["fds"]],
                       "worker_rss_kb_first_last": [samples[0]["worker_rss_kb"], samples[-1]["worker_rss_kb"]],
                       "guest_used_kb_first_last": [samples[0]["guest_used_kb"], samples[-1]["guest_used_kb"]]}
    finally:
        s.close()
        lab.close()

    out = PROJECT / "benchmarks" / "results" / f"runtime-{platform.node()}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("each_scenario_s",)}, indent=2)[:3000])
    print(f"written to {out}")


if __name__ == "__main__":
    main()
