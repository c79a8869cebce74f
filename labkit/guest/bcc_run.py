"""Run a bcc program in the lab VM until told to stop (SIGINT or SIGTERM).

Started by ``labkit.course.bcc`` with Debian's /usr/bin/python3 (python3-bpfcc
lives there, not in the lab's venv). The spec file (JSON) names the C text,
the kprobes ({kernel function: handler}) and the output file; everything the
program says goes to that file as JSON lines (compiling, ready, trace, done,
error), and bcc's own chatter (header warnings) to a log beside it, so
nothing floods the VM's console channel.
"""

import json
import os
import signal
import subprocess
import sys
import time


def main():
    spec = json.load(open(sys.argv[1]))
    out = open(spec["out"], "w", buffering=1)
    chatter = os.open(spec["out"] + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(chatter, 1)
    os.dup2(chatter, 2)

    def say(**msg):
        out.write(json.dumps(msg) + "\n")

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # bpf_trace_printk() output is read from tracefs.
    for fs, where in (("tracefs", "/sys/kernel/tracing"), ("debugfs", "/sys/kernel/debug")):
        if not os.path.ismount(where):
            subprocess.run(["mount", "-t", fs, "nodev", where], check=False)
    # Trace times on CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns() and so of the lab's event
    # log: the host matches a trace line to the log's events by address and time.
    clock = "/sys/kernel/tracing/trace_clock"
    try:
        with open(clock, "w") as fh:
            fh.write("mono")
        say(ev="clock", clock="mono")
    except OSError:
        pass
    say(ev="compiling")
    t0 = time.monotonic()
    try:
        from bcc import BPF

        b = BPF(text=spec["program"])
        for fn, handler in spec["probes"].items():
            b.attach_kprobe(event=fn, fn_name=handler)
    except Exception as exc:  # noqa: BLE001 - the learner's C: report it, whatever it is
        say(ev="error", error=f"{type(exc).__name__}: {exc}")
        return 1
    say(ev="ready", compile_s=round(time.monotonic() - t0, 1))
    while not stop:
        try:
            task, pid, cpu, flags, ts, msg = b.trace_fields(nonblocking=True)
        except ValueError:
            continue
        if task is None:
            time.sleep(0.05)
            continue
        say(ev="trace", ts=ts, comm=task.decode(errors="replace"), msg=msg.decode(errors="replace"))
    say(ev="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
