"""Workshop sizing: 1, 2 and 3 students running lesson 01 live at once, from cold servers.

    sudo .venv/bin/python benchmarks/workshop.py [--prefix DIR] [--students 1,2,3]

For each group size: a fresh hub from one install (``labkit hub setup``),
that many students log in and start their servers at the same moment, and
each runs lesson 01 top to bottom through their own server's kernel (as
their browser would). Per student: seconds to their server, to the first
lifetime graph and to the end of the lesson; whether their lab VM queued
for a boot slot (the hub's cap); the peak memory of their cgroup (server, kernel and QEMU)
and its CPU time. From those, a sizing table for a 16- and a 64-core
server (the model is printed with it).

Writes benchmarks/results/workshop-<accel>.json and prints the tables.
A measurement, not a test: nothing here fails on a slow machine.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

import nbformat  # noqa: E402

from labkit.hub import cgroups  # noqa: E402
from labkit.hub.drive import run_notebook  # noqa: E402
from labkit.vm.lab import choose_accel  # noqa: E402
from tests.host import hubtools as ht  # noqa: E402

LESSON = PROJECT / "notebooks" / "01_first_storage.ipynb"
RESULTS = PROJECT / "benchmarks" / "results"
GIB = 1 << 30
WAIT_S = 10.0  # the first graph a room waits for, from the server's request (sizing())


def cgroup_stats(layout, name) -> dict:
    """Peak memory (bytes) of a student's cgroup, and the CPU seconds its
    processes used so far (their own and their reaped children's)."""
    cg = cgroups.StudentCgroup(layout, name)
    peak_file = "memory.peak" if layout.version == "v2" else "memory.max_usage_in_bytes"
    try:
        peak = int(Path(cg.paths["memory"], peak_file).read_text().strip() or 0)
    except OSError:
        peak = 0
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = 0.0
    for pid in cg.pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
    return {"peak_bytes": peak, "cpu_s": round(cpu, 1)}


def one_group(prefix, n, layout, log) -> list[dict]:
    # Each student 1 CPU (the hub's default): 2 per CPU fit as servers; with more, the third of
    # three would find no server on 2 cores (active_server_limit).
    hub = ht.start_hub(prefix, state=Path(prefix) / f"state-bench-{n}", max_vms=n, memory="3G", cpus=1.0)
    students = []
    try:
        students = [ht.login(hub, name) for name in ht.test_names(n, "bench")]
        nb = nbformat.read(LESSON, as_version=4)
        rows = [None] * n
        start = threading.Barrier(n)

        def student(i, s):
            try:
                one_student(i, s)
            except Exception as exc:  # noqa: BLE001 - reported in the results, the group goes on
                rows[i] = {"student": i + 1, "failed": f"{type(exc).__name__}: {exc}"[:500]}

        def one_student(i, s):
            start.wait()
            t0 = time.monotonic()
            while True:  # as a learner does when the hub says "too many users ... try again" (HTTP 429)
                try:
                    ht.spawn(hub, s, timeout=600)
                    break
                except AssertionError as exc:
                    if "HTTP 429" not in str(exc) or time.monotonic() - t0 > 300:
                        raise
                    time.sleep(1.0)
            server_s = time.monotonic() - t0
            texts = []
            with ht.kernel(hub, s, timeout=1200) as k:
                r = run_notebook(k, nb, cell_timeout=1200)
                stats = cgroup_stats(layout, s.name)  # while the kernel and its VM still run
            for err in r["errors"]:
                texts.append(f"{err['ename']}: {err['evalue']}")
            rows[i] = {"student": i + 1, "server_s": round(server_s, 1),
                       "first_graph_s": round(server_s + r["first_graph_s"], 1) if r["first_graph_s"] else None,
                       "run_all_to_graph_s": round(r["first_graph_s"], 1) if r["first_graph_s"] else None,
                       "done_s": round(server_s + r["seconds"], 1), "live": not r["replay_banner"],
                       "replay_why": str(r["replay_banner"])[:300] if r["replay_banner"] else None,
                       "boot_queued": r["boot_queued"],
                       "errors": texts[:3], **stats}

        threads = [threading.Thread(target=student, args=(i, s)) for i, s in enumerate(students)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        log(f"{n} student(s): " + "; ".join(
            f"#{r['student']} failed: {r['failed']}" if "failed" in r else
            f"#{r['student']} server {r['server_s']} s, graph {r['first_graph_s']} s, done {r['done_s']} s, "
            f"{r['peak_bytes'] / GIB:.2f} GiB, {r['cpu_s']} CPU-s" for r in rows if r))
        return [r for r in rows if r]
    finally:
        hub.stop()
        ht.remove_users(hub.users)


def sizing(groups: dict, cores_here: int) -> dict:
    """Students per core and memory per student, from the largest group measured.

    Model: a room where everyone presses "Run all" on a lesson at the same
    moment is the peak. Under TCG the lesson is CPU-bound, so N students need
    N x (CPU seconds per student) of CPU, shared by the server's cores; for
    every student to see the first graph within a wait a room tolerates,
    N <= cores x (that wait) / (CPU seconds to the first graph) --
    approximated by the lesson's CPU seconds scaled by the share of the run
    before the first graph. The wait: 10 s from the server's request (what a
    warm lab VM makes possible), and, as the first sizing had it, twice the
    one-student time ("students_per_core_2x"). Memory: the peak of each
    student's cgroup (server + kernel + QEMU), plus 2 GiB for the system and
    the hub; the memory limit per student is that peak with 25% headroom.
    """
    ok = {n: [r for r in rows if "failed" not in r and r["live"]] for n, rows in groups.items()}
    ok = {n: rows for n, rows in ok.items() if rows}
    largest = max(ok, key=int)
    rows = ok[largest]
    one = ok[min(ok, key=int)][0]
    cpu = statistics.median(r["cpu_s"] for r in rows)
    share = statistics.median(r["first_graph_s"] / r["done_s"] for r in rows if r["first_graph_s"])
    peak = max(r["peak_bytes"] for r in rows)
    per_student_limit = peak * 1.25
    target = WAIT_S
    per_core = target / (cpu * share) if cpu else None
    per_core_2x = 2 * one["first_graph_s"] / (cpu * share) if cpu else None
    table = {}
    for cores, ram_gib in ((16, 64), (64, 256)):
        by_cpu = int(cores * per_core) if per_core else None
        by_mem = int((ram_gib * GIB - 2 * GIB) / per_student_limit)
        table[f"{cores} cores, {ram_gib} GiB"] = {"by_cpu": by_cpu, "by_memory": by_mem,
                                                   "students": min(x for x in (by_cpu, by_mem) if x is not None)}
    return {"cpu_s_per_student": cpu, "share_before_first_graph": round(share, 2),
            "peak_gib_per_student": round(peak / GIB, 2), "limit_gib_per_student": round(per_student_limit / GIB, 2),
            "first_graph_target_s": round(target, 1), "students_per_core": round(per_core, 2) if per_core else None,
            "students_per_core_2x": round(per_core_2x, 2) if per_core_2x else None,
            "servers": table, "measured_on_cores": cores_here, "model": sizing.__doc__.split("\n\n", 1)[1].strip()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", help="an existing install (labkit hub setup); default: a fresh one")
    ap.add_argument("--students", default="1,2,3", help="group sizes, e.g. 1,2,3")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("the workshop benchmark makes unix users and runs a hub: run it as root")
    layout = cgroups.detect()
    prefix = args.prefix
    made = None
    if not prefix:
        made = prefix = tempfile.mkdtemp(prefix="skb-lab-bench-", dir="/opt")
        os.chmod(prefix, 0o755)
        t0 = time.monotonic()
        res = ht.setup(prefix)
        if res.returncode != 0:
            raise SystemExit(f"labkit hub setup failed:\n{res.stdout}\n{res.stderr}")
        print(f"install: {time.monotonic() - t0:.0f} s", flush=True)
    try:
        groups = {}
        for n in (int(x) for x in args.students.split(",")):
            groups[str(n)] = one_group(prefix, n, layout, lambda m: print(m, flush=True))
    finally:
        if made:
            import shutil

            shutil.rmtree(made, ignore_errors=True)
    accel = choose_accel(None, probe=False)[0]
    out = {"host": platform.node(), "cores": os.cpu_count(), "accel": accel, "cgroup": layout.describe(),
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "lesson": LESSON.name, "groups": groups,
           "sizing": sizing(groups, os.cpu_count())}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"workshop-{accel}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\n{'students':>8} {'server s':>9} {'1st graph s':>12} {'run all->graph':>15} {'done s':>7} "
          f"{'peak GiB':>9} {'CPU s':>6}")
    for n, rows in groups.items():
        for r in rows:
            if "failed" in r:
                print(f"{n:>8} student {r['student']} failed: {r['failed']}")
                continue
            print(f"{n:>8} {r['server_s']:>9} {str(r['first_graph_s']):>12} {str(r['run_all_to_graph_s']):>15} "
                  f"{r['done_s']:>7} "
                  f"{r['peak_bytes'] / GIB:>9.2f} {r['cpu_s']:>6}")
    s = out["sizing"]
    print(f"\nper student: {s['cpu_s_per_student']} CPU-s for the lesson, peak {s['peak_gib_per_student']} GiB "
          f"(limit {s['limit_gib_per_student']} GiB); {s['students_per_core']} students per core for a "
          f"{s['first_graph_target_s']} s wait ({s['students_per_core_2x']} for twice the one-student time)")
    for server, row in s["servers"].items():
        print(f"  {server}: {row['students']} students (CPU allows {row['by_cpu']}, memory {row['by_memory']})")
    print(f"\n{path}")


if __name__ == "__main__":
    main()
