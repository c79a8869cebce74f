"""Running the benchmark (``labkit.bench.storage``): how a run in the lab VM starts and ends.

In the guest, ``python -m labkit.bench.run`` prints the results (JSON) on stdout
and progress on stderr. When it ends without results it prints one report
line instead (``REPORT`` + JSON): the error with its fix and details, or
that a Ctrl-C stopped it and what was swept after the run's own teardown.
From the host, ``run_in_vm()`` starts it and turns that report into a
``BenchError`` or ``labkit.runtime.session.Interrupted``.

The results say what their figures are (``clock``, ``unit``, ``notes["unit"]``):
nanoseconds, or guest instructions in a lab VM that counts them
(``Lab(clock="icount")``); the figure's key is ``ns`` either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from labkit.bench.designs import BenchError
from labkit.bench.storage import INTERRUPT_GRACE, Bench, hold_lock, sweep_leftovers
from labkit.errors import LabError

UNITS = {"wall": "ns", "icount": "instructions"}  # the guest clock -> what its "ns" figures are
UNIT_NOTES = {
    "ns": "Figures are nanoseconds per program run, as the guest's clock measured them: under TCG every "
          "instruction is emulated, so they are several times native and move with the host's load; only ratios "
          "to the floor of the same repeat compare with other machines.",
    "instructions": "Figures are guest instructions per program run: QEMU counted every instruction the guest CPU "
                    "executed and moved the guest's clock 1 ns per instruction (-icount shift=0, TSC at 1 GHz), so "
                    "the kernel's run_time_ns / run_cnt counts instructions. What it gets right: the same kernel "
                    "code and the same JIT output as on hardware, every instruction of the program and of the "
                    "kfuncs, helpers and kernel paths it runs, counted exactly and the same on every run and "
                    "every machine. What it leaves out: what makes one instruction dearer than another on "
                    "hardware: cache misses, the real latency of atomics, locked instructions and interrupt "
                    "masking, and cross-CPU cache-line traffic (one vCPU: nothing is shared, nothing bounces).",
}


def guest_clock() -> str:
    """"icount" where this lab VM counts instructions (``labkit.clock=icount`` on the kernel command
    line), else "wall"."""
    try:
        with open("/proc/cmdline") as fh:
            words = fh.read().split()
    except OSError:
        return "wall"
    return "icount" if "labkit.clock=icount" in words else "wall"


RERUN = ("run it again: every run first removes what an earlier one left; if it fails the same way, "
         "re-run the notebook's setup cell for a fresh lab VM (or run: labkit cleanup)")


def run_in_vm(lab, packets, repeats, *, designs=None, stream=False, timeout=3600) -> dict:
    """Run the benchmark in a running lab VM (a ``labkit.vm.lab.Lab``) and return its results: what
    benchmarks/storage_cost.py and lesson 09 both do.

    A Ctrl-C stops it in the guest, where it removes what it built and puts the kernel settings
    back, then raises ``labkit.runtime.session.Interrupted``; a failure raises BenchError with the guest's
    own message, fix and details. designs: some designs only (``labkit.bench.storage.Bench``)."""
    from labkit import paths
    from labkit.runtime.session import Interrupted

    # The results come back on stdout (progress goes to stderr): the guest
    # writes no file on the host.
    argv = ["python", "-m", "labkit.bench.run", "--packets", str(packets), "--repeats", str(repeats)]
    if designs:
        argv += ["--designs", ",".join(designs)]
    try:
        res = lab.run(argv, cwd=paths.PROJECT, timeout=timeout, stream="stderr" if stream else False,
                      interrupt_grace=INTERRUPT_GRACE)
    except KeyboardInterrupt:  # a second Ctrl-C, or no end within the grace time: it was killed
        raise Interrupted("the benchmark: interrupted again before it had cleaned up, so it was stopped at "
                          "once", fix="run it again: the next run removes what this one left first") from None
    report = guest_report(res.out)
    if res.interrupted and (res.code == 0 or report.get("interrupted")):
        done = "it had finished" if res.code == 0 else "it stopped"
        raise Interrupted(f"the benchmark: interrupted; {done} and removed its namespaces, links, tc hooks and "
                          "programs, and put the kernel settings back", fix="run the cell again",
                          details="\n".join(report.get("swept") or []))
    if res.interrupted and res.code != 0 and not report:  # stopped in Python's start-up, before its main
        raise Interrupted("the benchmark: interrupted as it started, before it had built anything",
                          fix="run the cell again")
    if res.code != 0:
        if report.get("error"):
            raise BenchError(f"the benchmark failed in the lab VM: {report['error']}", fix=report.get("fix") or RERUN,
                             details=report.get("details") or res.err[-3000:])
        last = next((ln for ln in reversed(res.err.splitlines()) if ln.strip()), "")
        raise BenchError(f"the benchmark failed in the lab VM (status {res.code})" + (f": {last}" if last else ""),
                         fix=RERUN, details=(res.err or res.out)[-3000:])
    text = res.out  # the results are the last thing printed, a JSON object from a line of its own
    start = 0 if text.startswith("{") else text.rfind("\n{\n") + 1
    try:
        return json.loads(text[start:])
    except ValueError as exc:
        raise BenchError("the benchmark in the lab VM printed no results", fix=RERUN,
                         details=res.out[-3000:]) from exc


REPORT = "labkit-bench-report "  # the line on stdout that tells the host how a run ended, when not with results


def guest_report(out: str) -> dict:
    """The guest's report line (``REPORT`` + JSON) in a run's stdout, or {}."""
    for line in reversed(out.splitlines()):
        if line.startswith(REPORT):
            try:
                return json.loads(line[len(REPORT):])
            except ValueError:
                return {}
    return {}


def _report(**what):
    print(REPORT + json.dumps(what), flush=True)


def _interrupted(exc) -> bool:
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__context__
    return False


def _after_interrupt() -> list:
    """The run's own teardown has run; remove anything a badly timed Ctrl-C kept from it."""
    try:
        fd = hold_lock()
        try:
            return sweep_leftovers()
        finally:
            os.close(fd)
    except KeyboardInterrupt:
        return ["interrupted again while sweeping; the next run removes what is left first"]
    except Exception as exc:  # noqa: BLE001 - the next run sweeps again
        return [f"the sweep failed ({type(exc).__name__}: {exc}); the next run removes what is left first"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m labkit.bench.run", description="What per-packet data costs, timed in the lab VM.")
    ap.add_argument("--packets", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--designs", help="these designs only, comma-separated (the floor runs always)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    try:
        res = Bench(args.packets, args.repeats, progress=lambda m: print(m, file=sys.stderr, flush=True),
                    designs=args.designs.split(",") if args.designs else None).run()
    except LabError as exc:
        if _interrupted(exc):
            return _stopped()
        print(f"labkit bench: {exc.render()}", file=sys.stderr)
        _report(error=exc.message, fix=exc.fix, details=exc.details)
        return 1
    except KeyboardInterrupt:
        return _stopped()
    except Exception as exc:  # noqa: BLE001 - one line and the traceback as details, for the host
        if _interrupted(exc):
            return _stopped(f"the teardown after the interrupt failed: {type(exc).__name__}: {exc}")
        import traceback

        details = traceback.format_exc()
        print(details, file=sys.stderr)
        _report(error=f"{type(exc).__name__}: {exc}", details=details)
        return 1
    clock = guest_clock()
    res.update(clock=clock, unit=UNITS[clock], notes={**res["notes"], "unit": UNIT_NOTES[UNITS[clock]]})
    text = json.dumps(res, indent=1, sort_keys=True)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 0


def _stopped(*notes):
    swept = [*notes, *_after_interrupt()]
    print("labkit bench: interrupted; what it built was removed" + "".join(f"\n  {s}" for s in swept),
          file=sys.stderr)
    _report(interrupted=True, swept=swept)
    return 130


if __name__ == "__main__":
    sys.exit(main())
