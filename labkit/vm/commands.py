"""Commands in a running lab VM: ``Commands``, the part of ``labkit.vm.lab.Lab``
that runs argv as root in the guest over the agent's channel, and the
``Result`` it returns."""

import base64
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from labkit import paths
from labkit.errors import GuestTimeout, LabError, VMError
from labkit.vm.guestenv import guest_env
from labkit.vm.qemu import console_tail

DEFAULT_TIMEOUT = 600.0


@dataclass
class Result:
    """What a guest command did: its exit code and its output."""

    code: int
    stdout: bytes
    stderr: bytes
    interrupted: bool = False  # a Ctrl-C stopped it with SIGINT and it exited within the grace time

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")



class Commands:
    """Mixed into ``Lab``: it gives ``chan``, ``rundir``, ``workdir``, ``_ids``, ``alive()`` and ``kill()``."""

    def spawn(self, argv, *, cwd, env=None, stdin=False, module=None) -> int:
        """Start argv as root in the guest without waiting: its id on the channel
        (``out``/``exit`` events carry it; ``input``, ``signal`` and ``kill`` take it).
        cwd and the project are visible at their own paths (writable only inside the workdir).
        module: argv is ``python -u -m module ...``, which a restored VM's warm Python forks
        with its imports done."""
        self._ids += 1
        msg = {"op": "run", "id": self._ids, "argv": [str(a) for a in argv], "cwd": str(cwd),
               "env": guest_env(env), "bind": sorted({str(cwd), str(paths.PROJECT)})}
        if stdin:
            msg["stdin"] = True
        if module:
            msg["module"] = module
        self.chan.send(msg)
        return self._ids

    def run(self, argv, *, cwd=None, env=None, timeout=DEFAULT_TIMEOUT, stream=False, check=False,
            input=None, interrupt_grace=0.0) -> Result:
        """Run argv as root in the guest; return its exit code and output.

        cwd defaults to the host's current directory (writable in the guest when it is inside the
        VM's workdir, read-only otherwise); env adds to the guest's base environment; stream copies
        the output to this process's stdout/stderr as it arrives ("stderr": only that; a function:
        called with (fd, bytes) for each piece). Past timeout seconds the VM is killed and
        GuestTimeout raised. A Ctrl-C kills the command and is raised again; with interrupt_grace
        the command gets SIGINT and that many seconds to clean up and exit, and its Result comes
        back ``interrupted`` (killed past them, or at a second Ctrl-C).
        """
        if input is not None:
            raise ValueError("guest commands have no stdin")
        if isinstance(argv, str):
            argv = ["/bin/sh", "-c", argv]
        if not self.chan or not self.alive():
            raise VMError("the lab VM is not running", fix="start it: labkit vm start, or use `with Lab()`")
        cid = self.spawn(argv, cwd=os.path.abspath(cwd or os.getcwd()), env=env)
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        try:
            try:
                res = self._collect(cid, argv, out, err, deadline, timeout, stream)
            except KeyboardInterrupt:
                if interrupt_grace <= 0:
                    raise
                self.chan.send({"op": "signal", "id": cid, "sig": int(signal.SIGINT)})  # and wait
                res = self._collect(cid, argv, out, err, deadline, timeout, stream, time.monotonic() + interrupt_grace)
                if res is None:
                    raise KeyboardInterrupt from None
                res.interrupted = True
                return res
        except KeyboardInterrupt:
            try:
                self.chan.send({"op": "kill", "id": cid})
            except OSError:
                pass
            raise
        if check and res.code != 0:
            raise LabError(f"{' '.join(map(str, argv))} failed in the guest with status {res.code}",
                           details=(res.err or res.out)[-3000:])
        return res

    def _collect(self, cid, argv, out, err, deadline, timeout, stream, give_up=None):
        """Command cid's output until it exits: its Result; None at give_up (a monotonic time)."""
        while True:
            now = time.monotonic()
            if give_up is not None and now >= give_up:
                return None
            left = deadline - now
            if left <= 0:
                self._timeout(argv, timeout, out, err)
            try:
                msg = self.chan.recv(min(left, 0.5))
            except EOFError:
                msg = None
                self._crashed(argv, out, err)
            if msg is None:
                if not self.alive():
                    self._crashed(argv, out, err)
                continue
            if msg.get("id") != cid:
                continue
            if msg["ev"] == "out":
                data = base64.b64decode(msg["data"])
                (out if msg["fd"] == 1 else err).extend(data)
                if callable(stream):
                    stream(msg["fd"], data)
                elif stream is True or (stream == "stderr" and msg["fd"] == 2):
                    target = sys.stdout if msg["fd"] == 1 else sys.stderr
                    target.buffer.write(data)
                    target.flush()
            elif msg["ev"] == "exit":
                return Result(msg["code"], bytes(out), bytes(err))

    def _timeout(self, argv, timeout, out, err):
        tail = console_tail(self.rundir)
        last = (bytes(err) or bytes(out)).decode(errors="replace")[-1500:]
        self.kill()
        raise GuestTimeout(
            f"`{' '.join(map(str, argv))}` did not finish within {timeout:g}s in the lab VM; the VM was stopped",
            fix="look for a hang in the output below, or give it more time (--timeout)",
            details="\n".join(x for x in ["last output:", last, "console:", tail] if x.strip()),
        )

    def _crashed(self, argv, out, err):
        tail = console_tail(self.rundir)
        self.kill()
        raise VMError(
            f"the lab VM stopped while running `{' '.join(map(str, argv))}`",
            fix="the console below shows why (a kernel oops or panic); run it again to boot a fresh VM",
            details="console:\n" + tail,
        )

    def exchange_dir(self) -> Path:
        """A folder in the working folder where the guest writes files for the
        host (the only place it can write)."""
        d = self.workdir / ".labkit-vm"
        d.mkdir(mode=0o700, exist_ok=True)
        return d

    def ping(self, timeout=5.0) -> bool:
        self._ids += 1
        try:
            self.chan.send({"op": "ping", "id": self._ids})
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                msg = self.chan.recv(end - time.monotonic())
                if msg and msg.get("ev") == "pong":
                    return True
        except (OSError, EOFError):
            return False
        return False
