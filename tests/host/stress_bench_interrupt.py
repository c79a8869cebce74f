"""Ctrl-C the benchmark at many points of its run and check the guest is clean after each.

test_bench_interrupt.py interrupts it once, in its first design; this sweeps
the start of a run (imports, the lock and sweep, loading the programs,
building the namespaces, the first designs), N runs on one VM:

    .venv/bin/python -m tests.host.stress_bench_interrupt 12

Prints one line per run and exits 1 if any run left something behind,
failed the wrong way, or the run after them all did not work.
"""

import os
import signal
import sys
import threading
import time

from labkit.bench.run import run_in_vm
from labkit.runtime.session import Interrupted
from labkit.vm.lab import Lab
from tests.host.test_bench_interrupt import state


def main(runs):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bad = 0
    with Lab() as lab:
        clean = state(lab)
        for i in range(runs):
            delay = 0.5 + i * 1.0
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
            t0 = time.monotonic()
            timer.start()
            try:
                run_in_vm(lab, 3000, 20, timeout=600)
                what = "FAILED: finished"
                bad += 1
            except Interrupted as exc:
                what = f"interrupted: {exc.message[:60]}... {exc.details!r}"
            except Exception as exc:  # noqa: BLE001 - a wrong kind of error is a finding too
                what = f"FAILED: {type(exc).__name__}: {exc}"
                bad += 1
            finally:
                timer.cancel()
            left = state(lab)
            bad += left != clean
            print(f"{delay:4.1f}s {time.monotonic() - t0:5.1f}s {'clean' if left == clean else f'LEFT {left}'} {what}",
                  flush=True)
        res = run_in_vm(lab, 200, 1, timeout=600)
        ok = res["problems"] == [] and state(lab) == clean
        print("the run after:", "ok" if ok else f"FAILED {res['problems']}")
        bad += not ok
    print(f"{runs} interrupted runs: {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 12))
