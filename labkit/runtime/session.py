"""Run scenarios in a lab VM from the host: ``Session``.

One ``Session`` keeps one warm worker (``labkit.runtime.worker``) in a lab VM
and runs any number of scenarios through it without a reboot::

    with Session() as s:                      # boots a VM, or pass lab=Lab(...)
        log = s.run(scenarios.get("tunnel", kind="gre"))

Packets are built here with scapy (fast on the host, slow in the guest).
Every request has a deadline. A worker past it is killed and restarted
(the new one sweeps what the old one left); a VM that crashed is reported
with its console and can be replaced with ``restart()``.
"""

from __future__ import annotations

import base64
import json
import signal
import time

from labkit import paths
from labkit.errors import GuestTimeout, LabError, VMError
from labkit.runtime.events import EventLog
from labkit.vm.guestenv import guest_python

RUN_TIMEOUT = 60.0
START_TIMEOUT = 90.0


class ScenarioFailed(LabError):
    """The worker could not run the scenario; says why in one line."""


class Interrupted(LabError):
    """A run was interrupted; what it built was removed."""


def run_message(scenario) -> dict:
    """The worker's request to run scenario: validated, its packets built here and encoded."""
    from labkit.runtime import run as runtime

    scenario.validate()
    packets = [[ns, base64.b64encode(data).decode()] for ns, data in runtime.build_packets(scenario)]
    return {"op": "run", "scenario": scenario.to_dict(), "packets": packets}


class Session:
    """clock: the clock of the VM it boots when given no lab ("wall" or "icount", ``labkit.vm.lab.Lab``)."""

    def __init__(self, lab=None, *, start_timeout=START_TIMEOUT, clock="wall"):
        self.lab = lab
        self.clock = clock
        self._own_lab = lab is None
        self.start_timeout = start_timeout
        self.cid = None
        self.out = b""
        self.err = b""
        self.ready = None
        self._rid = 0

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        if self.lab is None:
            from labkit.vm.lab import Lab

            self.lab = Lab(clock=self.clock)
        if not self.lab.chan:
            self.lab.start()
        self._spawn()
        return self

    def _spawn(self):
        self.out, self.err = b"", b""
        self.cid = self.lab.spawn([guest_python(), "-u", "-m", "labkit.runtime.worker"], cwd=paths.PROJECT, stdin=True,
                                  module="labkit.runtime.worker")
        self.ready = self._reply(lambda m: m.get("ready"), self.start_timeout, "starting the scenario worker")

    def close(self):
        if self.lab is not None and self.lab.chan and self.cid is not None:
            try:
                self.lab.chan.send({"op": "kill", "id": self.cid})
            except OSError:
                pass
        self.cid = None
        if self._own_lab and self.lab is not None:
            self.lab.close()
            self.lab = None

    def restart(self):
        """A fresh worker; a fresh VM too if the old one is gone."""
        if self.lab is not None and not self.lab.alive():
            self.lab.kill()
            if not self._own_lab:
                raise VMError("the lab VM is gone", fix="start a new Lab and a new Session on it")
            self.lab = None
        elif self.lab is not None and self.cid is not None:
            try:
                self.lab.chan.send({"op": "kill", "id": self.cid})
            except OSError:
                pass
        self.start()

    # -- requests -------------------------------------------------------------------------

    def run(self, scenario, *, timeout=RUN_TIMEOUT) -> EventLog:
        """Run scenario once; its EventLog, or ScenarioFailed with one line."""
        resp = self.request(run_message(scenario), timeout=timeout, what=f"scenario {scenario.name}")
        log = EventLog.loads(resp["log"], source=f"scenario {scenario.name}")
        log.header["recorded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # when it reached the host
        return log

    def load(self, obj, programs=None, *, timeout=30.0) -> list:
        """Load a .bpf.o in the guest and unload it: the verifier's verdict.
        Returns the program names; a reject raises VerifierError."""
        return self.request({"op": "load", "obj": str(obj), "programs": programs}, timeout=timeout,
                            what=f"loading {obj}")["programs"]

    def state(self, timeout=20.0) -> dict:
        return self.request({"op": "state"}, timeout=timeout, what="state")["state"]

    def cleanup(self, timeout=30.0) -> list:
        return self.request({"op": "cleanup"}, timeout=timeout, what="cleanup")["done"]

    def request(self, msg, *, timeout, what):
        if self.cid is None:
            raise LabError("the session is closed", fix="use `with Session() as s:`")
        self._rid += 1
        rid = self._rid
        self.lab.chan.send({"op": "input", "id": self.cid, "data": json.dumps({"id": rid, **msg}) + "\n"})
        try:
            resp = self._reply(lambda m: m.get("id") == rid, timeout, what)
        except KeyboardInterrupt:
            resp = self._interrupt(rid, what)
            if resp.get("ok"):  # it finished before the signal landed; Ctrl-C still means stop
                raise Interrupted(f"{what}: interrupted; the run had finished and removed what it built") from None
        if resp.get("ok"):
            return resp
        if resp.get("kind") == "interrupted":
            raise Interrupted(f"{what}: {resp['error']}", details=resp.get("details", ""))
        if resp.get("kind") == "VerifierError":
            from labkit.errors import VerifierError

            raise VerifierError(resp["error"], details=resp.get("details", ""))
        raise ScenarioFailed(f"{what}: {resp['error']}", details=resp.get("details", ""))

    def _interrupt(self, rid, what):
        """Ctrl-C while the guest works: let the run tear down, then report."""
        self.lab.chan.send({"op": "signal", "id": self.cid, "sig": int(signal.SIGINT)})
        try:
            return self._reply(lambda m: m.get("id") == rid, 20.0, f"{what} (stopping after an interrupt)")
        except KeyboardInterrupt:
            self.restart()
            raise

    # -- the channel ---------------------------------------------------------------------

    def _reply(self, want, timeout, what):
        lab = self.lab
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.out:
                line, self.out = self.out.split(b"\n", 1)
                try:
                    m = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if want(m):
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                self._timed_out(what, timeout)
            try:
                msg = lab.chan.recv(min(left, 0.5))
            except EOFError:
                msg = None
            if msg is None:
                if not lab.alive():
                    self._vm_gone(what)
                continue
            if msg.get("id") != self.cid:
                continue
            if msg.get("ev") == "out":
                data = base64.b64decode(msg["data"])
                if msg["fd"] == 1:
                    self.out += data
                else:
                    self.err = (self.err + data)[-20000:]
            elif msg.get("ev") == "exit":
                self.cid = None
                tail = self.err.decode(errors="replace").strip().splitlines()[-15:]
                raise ScenarioFailed(f"{what}: the scenario worker exited with status {msg['code']}",
                                     fix="run it again (a new worker starts); the details show its last words",
                                     details="\n".join(tail))

    def _timed_out(self, what, timeout):
        from labkit.vm.qemu import console_tail

        tail = self.err.decode(errors="replace")[-1500:]
        try:
            self.lab.chan.send({"op": "kill", "id": self.cid})
        except OSError:
            pass
        self.cid = None
        if self.lab.alive() and self.lab.ping(5.0):
            try:
                self._spawn()  # the new worker sweeps what the killed one left
            except LabError:
                pass
            raise GuestTimeout(f"{what} did not finish within {timeout:g}s; the worker was restarted",
                               fix="give it more time (timeout=...) or look for a hang in the details",
                               details=tail)
        console = console_tail(self.lab.rundir)
        self.lab.kill()
        raise GuestTimeout(f"{what} did not finish within {timeout:g}s and the lab VM stopped answering; "
                           "the VM was stopped", fix="run it again to boot a fresh VM",
                           details="console:\n" + console)

    def _vm_gone(self, what):
        from labkit.vm.qemu import console_tail

        console = console_tail(self.lab.rundir) if self.lab.rundir else ""
        self.lab.kill()
        self.cid = None
        raise VMError(f"the lab VM stopped during {what}",
                      fix="start a new session (the console below shows why it stopped)",
                      details="console:\n" + console)
