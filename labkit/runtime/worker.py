"""The scenario worker: a long-lived process in the lab VM.

Started by ``labkit.runtime.session.Session`` through the agent, it imports what
scenario runs need once (pyroute2, libbpf, the runtime; that alone takes
seconds under TCG) and then serves requests, one JSON line each on stdin,
answering one JSON line each on stdout:

``{"id": N, "op": "run", "scenario": {...}, "packets": [[ns, base64], ...]}``
    -> ``{"id": N, "ok": true, "log": "<EventLog as JSON lines>"}``
``{"id": N, "op": "load", "obj": path, "programs": [names] or null}``
    -> load the object (the verifier checks every program) and unload it
``{"id": N, "op": "state"}``
    -> what the lab holds in the guest now (namespaces, links, cgroups,
       pins, tc filters), the worker's open fds and the guest's memory
``{"id": N, "op": "cleanup"}``
    -> sweep what lab runs left behind

A failure answers ``{"ok": false, "error": one line, "details": ..., "kind":
...}``. SIGINT interrupts the run in progress: the run tears down what it
built, anything a badly timed signal kept from it is swept, and the worker
answers ``kind: interrupted`` and goes on serving.
"""

import base64
import json
import os
import sys
import time
import traceback

T0 = time.monotonic()


def emit(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def state():
    from labkit.guest.cgroup import lab_cgroups
    from labkit.guest.netns import lab_namespaces, sh

    links = [ln.split(":")[1].strip().split("@")[0] for ln in sh("ip", "-o", "link", "show", check=False).splitlines()]
    mem = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            k, v = line.split(":")
            mem[k] = int(v.split()[0])
    with open("/proc/self/status") as fh:
        rss = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:"))
    return {"netns": lab_namespaces(), "links": [n for n in links if n.startswith("lk")],
            "cgroups": lab_cgroups(), "pins": sorted(p for p in os.listdir("/sys/fs/bpf") if p.startswith("lk")),
            "tc": [ln for ln in sh("tc", "qdisc", "show", check=False).splitlines() if "clsact" in ln],
            "fds": len(os.listdir("/proc/self/fd")), "rss_kb": rss,
            "mem_used_kb": mem["MemTotal"] - mem["MemAvailable"]}


def handle(req):
    op = req.get("op")
    if op == "run":
        from labkit.runtime import run as runtime
        from labkit.runtime.scenario import Scenario

        sc = Scenario.from_dict(req["scenario"])
        packets = [(ns, base64.b64decode(b)) for ns, b in req["packets"]] if req.get("packets") else None
        log = runtime.run(sc, packets)
        return {"ok": True, "log": log.dumps()}
    if op == "load":
        from labkit.bpf.libbpf import BpfObject

        with BpfObject(req["obj"], programs=req.get("programs")) as obj:
            names = sorted(n for n in obj.programs if req.get("programs") is None or n in req["programs"])
        return {"ok": True, "programs": names}
    if op == "state":
        return {"ok": True, "state": state()}
    if op == "cleanup":
        from labkit.vm.cleanup import guest_sweep

        return {"ok": True, "done": guest_sweep()}
    return {"ok": False, "error": f"unknown request {op!r}", "kind": "protocol"}


def _during_interrupt(exc):
    while exc is not None:
        if isinstance(exc, KeyboardInterrupt):
            return True
        exc = exc.__context__
    return False


HOME_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY)


def after_interrupt(sweep):
    """A Ctrl-C can land anywhere, also inside a library between creating
    something and handing it to the run's teardown, or between entering a
    namespace and the block that leaves it: come home, sweep what is left."""
    from labkit.guest.netns import set_netns

    left = []
    try:
        if os.stat("/proc/self/ns/net").st_ino != os.fstat(HOME_NETNS).st_ino:
            set_netns(HOME_NETNS)
            left.append("the worker was left in a lab namespace; it went back to its own")
        left += [d for d in sweep() if d != "nothing to clean"]
    except KeyboardInterrupt:
        left.append("interrupted again while sweeping; the next worker sweeps")
    return "\n".join(["swept after the run's own teardown:", *left]) if left else ""


def preload():
    """Import and load what every run needs (seconds under TCG). A snapshot VM's
    warm Python (``labkit.runtime.zygote``) does it once, before the snapshot."""
    import pyroute2  # noqa: F401

    from labkit.bpf.ffi import lib
    from labkit.runtime import observer as runtime_observer
    from labkit.runtime import run  # noqa: F401 - warm: the worker runs these
    from labkit.runtime.symbols import Symbols
    from labkit.vm import cleanup  # noqa: F401

    lib()
    Symbols.get()
    runtime_observer.KEEP_LOADED = True


def main():
    # Warm up what every run needs (nothing left to do when forked warm), then
    # clear what a killed worker left.
    from labkit.errors import LabError
    from labkit.vm.cleanup import guest_sweep

    preload()
    swept = [d for d in guest_sweep() if d != "nothing to clean"]
    emit({"ready": True, "pid": os.getpid(), "start_s": round(time.monotonic() - T0, 2), "swept": swept})
    while True:
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            continue
        if not line:
            return
        if not line.strip():
            continue
        req = {}
        try:
            req = json.loads(line)
            resp = handle(req)
        except KeyboardInterrupt:
            resp = {"ok": False, "kind": "interrupted", "error": "interrupted; the run's namespaces, links, "
                    "tc hooks and programs were removed", "details": after_interrupt(guest_sweep)}
        except LabError as exc:
            resp = {"ok": False, "kind": type(exc).__name__, "error": exc.headline(), "details": exc.details}
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            if _during_interrupt(exc):  # the teardown after a Ctrl-C failed: still an interrupt, swept
                resp = {"ok": False, "kind": "interrupted", "error": "interrupted; what the run built was removed by a sweep",
                        "details": "\n".join([f"the run's teardown failed: {type(exc).__name__}: {exc}",
                                              after_interrupt(guest_sweep)])}
            else:
                resp = {"ok": False, "kind": "internal", "error": f"{type(exc).__name__}: {exc}",
                        "details": traceback.format_exc()}
        try:
            emit({"id": req.get("id"), **resp})
        except KeyboardInterrupt:
            emit({"id": req.get("id"), **resp})


if __name__ == "__main__":
    main()
