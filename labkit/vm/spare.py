"""A spare lab VM, up before anyone asks for one.

A workshop hub starts one for a student when their server starts
(``LABKIT_SPARE`` names their lessons' folder; ``labkit/jupyter_config``
launches it), so the first lesson cell that wants a VM takes one already
restored instead of starting one.

    python -m labkit.vm.spare WORKDIR

restores a lab VM (``Lab(persistent=True)``, its warm snapshot) whose
working folder is WORKDIR, in this user's run folder as ``spare/``, and
exits. The first ``Lab()`` of this user with the same kernel, accel, vCPUs,
memory and working folder takes it over (``claim``: an atomic rename of that
folder into a run folder of its own, then a guard that kills it with its new
owner); any other ``Lab()`` leaves it alone. One spare at a time; a spare
nobody claims ends with the server (``labkit cleanup``, which the hub runs
at every server stop). It holds no VM slot of the hub's cap until claimed:
a lesson takes its running slot as before.
"""

import fcntl
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from labkit import paths
from labkit.errors import LabError
from labkit.vm.lab import SPARE, Lab, qemu_alive


def start(workdir) -> dict:
    """Restore the spare VM (one per user; none if one is up); its state."""
    base = paths.run_dir()
    lock = os.open(base / f"{SPARE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        return {}  # another start is making it
    try:
        current = base / SPARE / "state.json"
        if current.exists():
            state = json.loads(current.read_text())
            if qemu_alive(state.get("pid")):
                return state
            shutil.rmtree(base / SPARE, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{SPARE}-new-", dir=base))
        lab = Lab(persistent=True, rundir=tmp, workdir=workdir)
        try:
            lab.start()
            state = {"pid": lab.pid, "kernel": str(lab.kernel_dir), "accel": lab.accel, "cpus": lab.cpus,
                     "memory": lab.memory, "workdir": str(lab.workdir), "release": lab.release,
                     "snapshot": str(lab.warm.dir) if lab.warm else "", "accel_why": lab.accel_why}
            (tmp / "state.json").write_text(json.dumps(state))
            lab.chan.close()
            lab.chan = None
            os.rename(tmp, base / SPARE)
            return state
        except BaseException:
            lab.kill()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        os.close(lock)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workdir = argv[0] if argv else os.getcwd()
    try:
        state = start(workdir)
    except LabError as exc:
        print(f"labkit: no spare lab VM: {exc.render()}", file=sys.stderr)
        return 2
    if state:
        print(f"spare lab VM up: pid {state['pid']}, working folder {state['workdir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
