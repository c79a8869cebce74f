"""The lab VM that stays up: ``labkit vm start`` boots it, ``labkit vm run``
reuses it, ``labkit vm stop`` (or ``labkit cleanup``) ends it.

Its state lives in this user's run folder (``labkit.paths.run_dir()``), so
each user has their own and never sees another's. The folder the guest may
write is the one ``labkit vm start`` ran in.
"""

import fcntl
import json
import time
from pathlib import Path

from labkit import paths
from labkit.errors import VMError


def _state_dir():
    return paths.private_dir(paths.run_dir() / "persistent")


def persistent_state():
    """The running persistent VM's state, or None (stale state is removed)."""
    d = _state_dir()
    try:
        state = json.loads((d / "state.json").read_text())
    except (OSError, ValueError):
        return None
    from labkit.vm.lab import qemu_alive

    if not qemu_alive(state.get("pid")):
        (d / "state.json").unlink(missing_ok=True)
        return None
    return state


def start_persistent(kernel_dir=None):
    from labkit.vm.lab import Lab

    state = persistent_state()
    if state:
        return state
    d = _state_dir()
    for stale in ("ctl.sock", "console.log", "qemu.log", "qemu.pid"):
        (d / stale).unlink(missing_ok=True)
    lab = Lab(kernel_dir, persistent=True, rundir=d)
    lab.start()
    state = {"pid": lab.pid, "rundir": str(d), "kernel": str(lab.kernel_dir), "accel": lab.accel,
             "accel_why": lab.accel_why, "boot_seconds": lab.boot_seconds, "release": lab.release,
             "workdir": str(lab.workdir)}
    (d / "state.json").write_text(json.dumps(state))
    lab.chan.close()
    return state


def attach_persistent(state):
    """A Lab object talking to the running persistent VM."""
    from labkit.vm.channel import Channel, connect
    from labkit.vm.lab import Lab

    lab = Lab(state["kernel"], accel=state["accel"], persistent=True, rundir=state["rundir"],
              workdir=state.get("workdir"))
    lab.pid = state["pid"]
    sock = connect(Path(state["rundir"]) / "ctl.sock", time.monotonic() + 5, lab.alive)
    if sock is None:
        raise VMError("the persistent lab VM does not answer", fix="run: labkit vm stop, then try again")
    lab.chan = Channel(sock)
    if not lab.ping():
        lab.chan.close()
        raise VMError("the persistent lab VM does not answer", fix="run: labkit vm stop, then try again")
    return lab


class persistent_lock:
    """One host client at a time on the persistent VM's single channel."""

    def __enter__(self):
        self.fh = open(_state_dir() / "lock", "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False


def stop_persistent() -> bool:
    from labkit.vm.lab import Lab

    state = persistent_state()
    if not state:
        return False
    lab = Lab(state["kernel"], accel=state["accel"], persistent=True, rundir=state["rundir"],
              workdir=state.get("workdir"))
    lab.pid = state["pid"]
    lab.kill()
    (_state_dir() / "state.json").unlink(missing_ok=True)
    return True


def open_lab():
    """The persistent VM if one runs (caller holds persistent_lock), else a fresh one (not started)."""
    from labkit.vm.lab import Lab

    state = persistent_state()
    if state:
        return attach_persistent(state), True
    return Lab(), False
