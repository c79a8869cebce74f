"""A spare lab VM, up before anyone asks for one.

A workshop hub starts one for a student when their server starts
(``LABKIT_SPARE`` names their lessons' folder; ``labkit/jupyter_config``
launches it), so the first lesson cell that wants a VM takes one already
restored instead of starting one.

    python -m labkit.vm.spare WORKDIR

takes this user's running slot of the hub's VM cap (``labkit.vm.slots``;
none free: no spare), restores a lab VM (``Lab(persistent=True)``, its warm
snapshot) whose working folder is WORKDIR, in this user's run folder as
``spare/``, and stays up as its *keeper*, holding the slot:

- the first ``Lab()`` of this user with the same kernel, accel, vCPUs,
  memory and working folder takes the VM over
  (``labkit.vm.lab.claim_spare``: an atomic rename of that folder, then a
  guard that kills the VM with its new owner); any other leaves it alone;
- a lesson (``labkit.course.lesson``), which holds the user's running slot
  while its VM lives, gets the keeper's slot (``take_slot``: the broker's
  connection passed over a unix socket), since the broker gives a user one;
- the keeper ends when the VM does; it stops a VM whose slot was taken but
  which nobody claimed within CLAIM_WAIT, so no VM runs outside the cap.

A spare nobody claims ends with the server (the hub kills the server's
cgroup, and runs ``labkit cleanup``).
"""

import json
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

from labkit import paths
from labkit.errors import LabError
from labkit.vm import slots
from labkit.vm.lab import SPARE, Lab, qemu_alive

HAND = "spare-slot.sock"  # where the keeper hands its slot over, in the run folder (0700)
CLAIM_WAIT = 60.0
HAND_WAIT = 60.0  # s a lesson waits for a keeper whose VM is still being restored


def start(workdir):
    """(state, slot, server): the spare VM restored under this user's running slot, and the socket
    its slot is handed over on; None when none is free or a spare is up already. The socket listens
    from before the slot is taken: a lesson that asks while the VM restores waits for it."""
    base = paths.run_dir()
    current = base / SPARE / "state.json"
    if current.exists():
        try:
            if qemu_alive(json.loads(current.read_text()).get("pid")):
                return None
        except (OSError, ValueError):
            pass
        shutil.rmtree(base / SPARE, ignore_errors=True)
    hand = base / HAND
    hand.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(hand))
    server.listen(8)
    try:
        slot = slots.running_slot()
    except slots.SlotsFull:
        server.close()
        hand.unlink(missing_ok=True)
        return None  # the cap is full, or this user's lesson has a VM: no spare
    tmp = Path(tempfile.mkdtemp(prefix=f"{SPARE}-new-", dir=base))
    lab = Lab(persistent=True, rundir=tmp, workdir=workdir)
    try:
        lab.start()
        state = {"pid": lab.pid, "kernel": str(lab.kernel_dir), "accel": lab.accel, "cpus": lab.cpus,
                 "memory": lab.memory, "workdir": str(lab.workdir), "release": lab.release,
                 "snapshot": str(lab.warm.dir) if lab.warm else "", "accel_why": lab.accel_why,
                 "keeper": os.getpid(), "slot": slot.index}
        (tmp / "state.json").write_text(json.dumps(state))
        lab.chan.close()
        lab.chan = None
        os.rename(tmp, base / SPARE)
        return state, slot, server
    except BaseException:
        lab.kill()
        shutil.rmtree(tmp, ignore_errors=True)
        slot.release()
        server.close()
        hand.unlink(missing_ok=True)
        raise


def keep(state, slot, server):
    """Hold the VM's slot until the VM ends; hand it to this user's lesson when it asks (on server)."""
    base = paths.run_dir()
    hand = base / HAND
    server.settimeout(1.0)
    handed = None
    try:
        while qemu_alive(state["pid"]):
            if handed is not None and (base / SPARE).exists() and time.monotonic() - handed > CLAIM_WAIT:
                os.kill(state["pid"], signal.SIGKILL)  # its slot went to a lesson that did not take the VM
                break
            try:
                conn, _ = server.accept()
            except (TimeoutError, socket.timeout):
                continue
            with conn:
                if peer_uid(conn) == os.getuid() and slot is not None and slot.held and slot.capped:
                    socket.send_fds(conn, [json.dumps({"index": slot.index}).encode()], [slot.fileno()])
                    slot.let_go()  # not release(): that would end the connection the lesson now holds
                    slot = None
                    handed = time.monotonic()
                else:
                    conn.sendall(b"{}")
    finally:
        server.close()
        hand.unlink(missing_ok=True)
        if slot is not None:
            slot.release()


def peer_uid(conn) -> int:
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return uid


def take_slot():
    """The running slot this user's spare VM's keeper holds, handed over; None if there is none."""
    path = paths.run_dir() / HAND
    if not path.exists():
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(HAND_WAIT)  # the keeper answers once its VM is up
    try:
        s.connect(str(path))
        msg, fds, _flags, _addr = socket.recv_fds(s, 4096, 1)
    except OSError:
        return None
    finally:
        s.close()
    if not fds:
        return None
    info = json.loads(msg or b"{}")
    conn = socket.socket(fileno=fds[0])
    conn.settimeout(None)
    return slots.Slot("run", info.get("index"), conn)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workdir = argv[0] if argv else os.getcwd()
    try:
        started = start(workdir)
    except LabError as exc:
        print(f"labkit: no spare lab VM: {exc.render()}", file=sys.stderr)
        return 2
    if not started:
        return 0
    state, slot, server = started
    print(f"spare lab VM up: pid {state['pid']}, working folder {state['workdir']}", flush=True)
    if os.environ.get("LABKIT_SPARE_DETACH") != "0":
        if os.fork():  # the keeper goes on in the background; the caller has its answer
            return 0
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
    keep(state, slot, server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
