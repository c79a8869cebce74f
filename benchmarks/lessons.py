"""How long the lessons take: every notebook executed live and in replay, and
``./lab open`` (the README's first command) from start to JupyterLab
answering, on a warm cache.

    .venv/bin/python benchmarks/lessons.py            # results/lessons-<host>.json

Live runs boot one lab VM per notebook (as a learner's kernel does); the
replay runs read notebooks/data/. ``./lab open`` is timed whole: the set-up
checks (packages, venv, cached kernel, BPF objects), the VM boot check,
then JupyterLab until its API answers.
"""

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labkit.course.nbrun import execute  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


def time_open() -> dict:
    """The README's first command, `./lab open`, until it prints the URL; then stop it."""
    t0 = time.monotonic()
    proc = subprocess.Popen([str(ROOT / "lab"), "open"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = []
    ready = None
    for line in proc.stdout:
        out.append(line)
        if "JupyterLab is ready" in line:
            ready = time.monotonic() - t0
            break
    proc.terminate()
    proc.wait(30)
    boot = next((float(m.group(1)) for ln in out if (m := re.search(r"booted in ([\d.]+) s", ln))), None)
    return {"seconds_to_ready": round(ready, 2) if ready else None, "vm_boot_s": boot}


def main():
    res = {"host": socket.gethostname(), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "notebooks": {}}
    for mode in ("replay", "live"):
        total = 0.0
        for nb in NOTEBOOKS:
            r = execute(nb, mode)
            name = str(nb.relative_to(ROOT / "notebooks"))
            res["notebooks"].setdefault(name, {})[mode] = {"seconds": r["seconds"], "errors": len(r["errors"]),
                                                           "checks": r["checks"]}
            total += r["seconds"]
            print(f"{mode:6} {r['seconds']:6.1f}s {name}", flush=True)
        res[f"total_{mode}_s"] = round(total, 1)
        print(f"{mode}: {len(NOTEBOOKS)} notebooks in {total:.1f}s", flush=True)
    res["lab_open"] = time_open()
    print(f"./lab open to JupyterLab ready: {res['lab_open']}", flush=True)
    out = ROOT / "benchmarks" / "results" / "lessons-vm.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
