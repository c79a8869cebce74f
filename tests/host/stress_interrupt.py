"""Ctrl-C a scenario run at many points and check the guest is clean after each.

test_interrupt_during_traffic samples one point (0.6 s); this sweeps the
whole run, 0.05-0.83 s in 0.02 s steps, N runs in one session:

    .venv/bin/python -m tests.host.stress_interrupt 200

Prints one line per run and exits 1 if any run left something behind.
The details of an interrupt say what the worker's safety-net sweep had to
remove; in a healthy lab that is always nothing.
"""

import os
import signal
import sys
import threading
import time

from labkit.runtime.session import Interrupted, Session
from tests.host.test_session import CLEAN, geneve_flood, left_in_guest


def main(runs):
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sc, flood = geneve_flood()
    bad = swept = 0
    with Session() as s:
        s.run(sc)
        for i in range(runs):
            delay = 0.05 + (i % 40) * 0.02
            timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
            t0 = time.monotonic()
            timer.start()
            details = ""
            try:
                s.request(flood, timeout=60, what="scenario tunnel")
                what = "finished before the signal"
            except Interrupted as exc:
                what, details = "interrupted", exc.details
            except Exception as exc:  # noqa: BLE001 - a wrong kind of error is a finding too
                what = f"FAILED: {type(exc).__name__}: {exc}"
                bad += 1
            finally:
                timer.cancel()
            left = left_in_guest(s)
            if left != CLEAN:
                bad += 1
                s.cleanup()
            swept += bool(details)
            state = "clean" if left == CLEAN else f"LEFT {left}"
            print(f"{delay:.2f}s {time.monotonic() - t0:5.2f}s {state} {what}" + (f" {details!r}" if details else ""),
                  flush=True)
    print(f"{runs} runs: {bad} left something or failed, {swept} needed the safety-net sweep")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 40))
