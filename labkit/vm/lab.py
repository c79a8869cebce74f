"""The running lab VM: QEMU booting the lab kernel, commands run as root inside.

The guest's root filesystem is the host's own ``/`` over 9p, read-only
(``cache=loose``), so it runs the same Python environment, bpftool and
compiled BPF objects as the host. One host folder is writable in the
guest, at the same path: the VM's working folder (``workdir``, by default
the current directory when it boots). Nothing else of the host can be
written from the guest (``labkit.vm.qemu`` builds that command line).
``vmlinux`` boots directly through its PVH entry point. Commands travel as
JSON lines over a virtio-serial port to ``labkit/guest/agent.py``.

    with Lab() as lab:
        res = lab.run(["bpftool", "prog", "show"])
        print(res.code, res.stdout)

A command past its deadline is reported with the console tail and the VM
is killed. The VM never outlives its ``Lab``'s process: QEMU gets SIGKILL
when that process dies, and a guard process then removes the run folder
(``labkit.vm.qemu.Guard``). Run folders and control sockets live in this
user's own run folder (mode 0700). ``labkit vm start`` keeps one VM running
for reuse by ``labkit vm run`` (``labkit.vm.persistent``). What the guest is
given (its environment, the host folders it sees) is ``labkit.vm.guestenv``.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labkit import paths, tools
from labkit.errors import LabError, VMError
from labkit.vm import accel as vm_accel
from labkit.vm import restore, snapshot
from labkit.vm.channel import Channel, connect
from labkit.vm.commands import Commands
from labkit.vm.guestenv import guest_python, guest_visible
from labkit.vm.qemu import Guard, boot_image, check_workdir, clock_config, console_tail, die_with_parent, qemu_argv
from labkit.vm.warmbuild import resume_message

BOOT_TIMEOUT = float(os.environ.get("LABKIT_BOOT_TIMEOUT", "90"))


def choose_accel(kernel_dir=None, probe=True):
    """("kvm" | "tcg", why). KVM only where a probe boot of kernel_dir under it proved it works
    (``labkit.vm.accel``: what the machine decides alone, and the outcome kept for this host boot)."""
    known = vm_accel.known_choice(kernel_dir, probe)
    if known:
        return known
    t0 = time.monotonic()
    try:
        with Lab(kernel_dir=kernel_dir, accel="kvm", boot_timeout=20) as lab:
            lab.run(["true"], timeout=10)
        accel, why = "kvm", f"a probe boot under KVM answered in {time.monotonic() - t0:.1f}s"
    except LabError as exc:
        accel, why = "tcg", f"a probe boot under KVM failed ({exc.message})"
    return vm_accel.remember(kernel_dir, accel, why)


def default_snapshot(kernel_dir, *, cpus=2, memory="1G", progress=None):
    """(Snapshot | None, why): the warm snapshot a wall-clock Lab() of that size restores, made
    now if it is missing or stale (``labkit vm snapshot``, the tests before their first VM)."""
    accel, _ = choose_accel(kernel_dir)
    return restore.choose(kernel_dir, boot_image(kernel_dir), accel=accel, cpus=cpus, memory=memory, clock="wall",
                          progress=progress)


SPARE = "spare"  # this user's spare VM's run folder, in their run folder


def qemu_alive(pid) -> bool:
    """Whether pid is a QEMU process this user may signal (a pid file can outlive its VM, and its pid be reused)."""
    try:
        os.kill(pid, 0)
        return b"qemu-system" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, TypeError):
        return False


def claim_spare(kernel_dir, accel, cpus, memory, workdir):
    """(run folder, state) of this user's spare VM (``labkit.vm.spare``) if it fits, now the caller's; else None."""
    base = paths.run_dir()
    if not (base / SPARE / "state.json").exists():
        return None
    mine = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    try:
        os.rename(base / SPARE, mine)  # atomic: one claimer wins
    except OSError:
        mine.rmdir()
        return None
    try:
        state = json.loads((mine / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    wanted = {"kernel": str(kernel_dir), "accel": accel, "cpus": cpus, "memory": memory, "workdir": str(workdir)}
    if qemu_alive(state.get("pid")) and all(state.get(k) == v for k, v in wanted.items()):
        return mine, state
    # Not ours to use (another kernel, folder or size): put it back for its own Lab, or clear a dead one.
    if qemu_alive(state.get("pid")):
        try:
            os.rename(mine, base / SPARE)
            return None
        except OSError:
            os.kill(state["pid"], signal.SIGKILL)
    shutil.rmtree(mine, ignore_errors=True)
    return None


# ---- the VM ------------------------------------------------------------------------


class Lab(Commands):
    """One lab VM: boot on enter, power off on exit. Not thread-safe.

    kernel_dir: the directory ``labkit kernel path`` prints (default: the
    current lab kernel). accel: "kvm", "tcg" or None to choose. persistent:
    the QEMU process survives this Python process (``labkit vm start``).
    workdir: the host folder the guest may write (default: the current
    directory at boot); everything else of the host is read-only in the guest.
    clock: "wall" (default) or "icount": one vCPU (whatever cpus says) under
    single-threaded TCG whose clocks count guest instructions, 1 ns each
    (``labkit.vm.qemu.clock_config``; refused with accel="kvm").
    snapshot: restore the warm snapshot of this kernel and machine, made
    first if there is none (``labkit.vm.snapshot``); False boots cold.
    ``warm`` says which was restored, ``warm_why`` why none was.
    """

    def __init__(self, kernel_dir=None, *, accel=None, cpus=2, memory="1G",
                 boot_timeout=BOOT_TIMEOUT, persistent=False, rundir=None, workdir=None, clock="wall",
                 snapshot=True):
        self.kernel_dir = Path(kernel_dir) if kernel_dir else None
        self.clock = clock or "wall"
        self.accel, self.cpus, self.accel_why = clock_config(self.clock, accel, cpus)
        self.memory = memory
        self.boot_timeout = boot_timeout
        self.persistent = persistent
        self.rundir = Path(rundir) if rundir else None
        self.workdir = Path(workdir) if workdir else None
        self.proc = None
        self.guard = None
        self.pid = None
        self.chan = None
        self.boot_seconds = None
        self.release = None
        self.snapshot = snapshot
        self.warm = None
        self.spare = False  # taken over from this user's spare VM (labkit.vm.spare)
        self.warm_why = "" if snapshot else "snapshot=False"
        # Ids unique across clients: a persistent VM may still send output
        # of an earlier client's command.
        self._ids = int.from_bytes(os.urandom(4), "little") << 8
        self._own_rundir = False

    # -- lifecycle --

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self):
        from labkit import kernel

        if self.kernel_dir is None:
            self.kernel_dir = kernel.kernel_path()
        if not (self.kernel_dir / "vmlinux").is_file():
            raise VMError(f"no vmlinux in {self.kernel_dir}", fix="run: labkit kernel build")
        vmlinux = boot_image(self.kernel_dir)
        tools.require("qemu-system-x86_64")  # before anything is created on disk
        if self.workdir is not None:
            self.workdir = check_workdir(self.workdir)
        if self.accel is None:
            self.accel, self.accel_why = choose_accel(self.kernel_dir)
        if self.snapshot and not self.persistent and self.rundir is None and self.clock == "wall" \
                and self._take_spare():
            return
        warm = None
        if self.snapshot:
            warm, self.warm_why = restore.choose(self.kernel_dir, vmlinux, accel=self.accel, cpus=self.cpus,
                                                 memory=self.memory, clock=self.clock)
            if self.warm_why and self.clock == "wall":
                print(f"labkit: booting the lab VM cold: {self.warm_why}", file=sys.stderr)
        if warm is not None:
            try:
                self._boot(vmlinux, warm)
                return
            except VMError as exc:
                self.warm_why = f"the warm snapshot did not restore ({exc.message})"
                print(f"labkit: {self.warm_why}; booting cold", file=sys.stderr)
        self._boot(vmlinux, None)

    def _take_spare(self) -> bool:
        """This user's spare VM (``labkit.vm.spare``), if one is up and fits this one."""
        try:
            workdir = self.workdir or check_workdir(os.getcwd())
        except VMError:
            return False
        t0 = time.monotonic()
        taken = claim_spare(self.kernel_dir, self.accel, self.cpus, self.memory, workdir)
        if taken is None:
            return False
        self.rundir, state = taken
        self._own_rundir, self.workdir, self.pid = True, workdir, state["pid"]
        self.guard = Guard(self.pid, self.rundir)
        sock = connect(self.rundir / "ctl.sock", time.monotonic() + 10, self.alive)
        if sock is not None:
            self.chan = Channel(sock)
            if self.ping():
                self.release, self.accel_why = state.get("release"), state.get("accel_why", self.accel_why)
                self.warm = snapshot.read(state.get("snapshot"))
                self.spare = True
                self.boot_seconds = time.monotonic() - t0
                return True
        self.kill()
        self.rundir, self.pid, self._own_rundir = None, None, False
        return False

    def _boot(self, vmlinux, warm):
        """Boot (warm None) or restore warm; on any failure nothing is left."""
        if self.rundir is None or (self._own_rundir and not self.rundir.exists()):
            self.rundir = Path(tempfile.mkdtemp(prefix="run-", dir=paths.run_dir()))
            self._own_rundir = True
        try:
            if self.workdir is None:
                try:
                    self.workdir = check_workdir(os.getcwd())
                except VMError:
                    # Started from / or /tmp: the guest writes a scratch folder
                    # of its own; the current directory stays read-only.
                    self.workdir = self.rundir / "work"
                    self.workdir.mkdir(exist_ok=True)
            if warm is not None:
                argv = restore.restore_argv(vmlinux, self.rundir, warm, accel=self.accel, cpus=self.cpus,
                                            memory=self.memory, python=guest_python(), workdir=self.workdir)
            else:
                argv = qemu_argv(vmlinux, self.rundir, accel=self.accel, cpus=self.cpus,
                                 memory=self.memory, python=guest_python(), workdir=self.workdir,
                                 visible=guest_visible(), clock=self.clock)
            t0 = time.monotonic()
            with open(self.rundir / "qemu.log", "wb") as log:
                # Its own session: a signal to this process group (a terminal's
                # Ctrl-C, Jupyter's interrupt and shutdown, which signal the
                # kernel's whole group) reaches Python, which stops the run and
                # closes the VM, not QEMU, which would die mid-run and leave
                # its run directory. A VM that is not persistent still dies
                # with this process.
                self.proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=None if self.persistent else die_with_parent,
                    start_new_session=True,
                )
            self.pid = self.proc.pid
            if self._own_rundir and not self.persistent:
                self.guard = Guard(self.pid, self.rundir)
            self._await_ready(t0, warm)
        except BaseException:
            self.kill()  # QEMU, if it started, and the run directory
            raise

    def _await_ready(self, t0, warm=None):
        """Until the agent says it is ready (booted), or has mounted the host's folders (restored)."""
        deadline = t0 + self.boot_timeout
        sock = connect(self.rundir / "ctl.sock", deadline, self.alive)
        if sock is None:
            self._fail_boot("QEMU did not open its control socket")
        self.chan = Channel(sock)
        if warm is not None:
            self.chan.send(resume_message(self.workdir, guest_visible()))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                break
            try:
                msg = self.chan.recv(min(left, 0.5))
            except EOFError:
                break
            if msg and msg.get("ev") == ("done" if warm is not None else "ready"):
                if warm is not None and not msg.get("ok"):
                    self._fail_boot(f"the restored lab VM could not mount the host's folders: {msg.get('error')}")
                self.boot_seconds = time.monotonic() - t0
                self.release = warm.manifest.get("release") if warm is not None else msg.get("release")
                self.warm = warm
                return
        if self.proc is not None:
            try:
                self.proc.wait(timeout=3)  # a closed channel usually means QEMU is exiting
            except subprocess.TimeoutExpired:
                pass
        self._fail_boot(f"the lab VM did not come up within {self.boot_timeout:.0f}s"
                        if self.alive() else "the lab VM stopped while booting")

    def _fail_boot(self, what):
        qemu_log = ""
        try:
            qemu_log = (self.rundir / "qemu.log").read_text(errors="replace").strip()
        except OSError:
            pass
        details = "\n".join(x for x in [qemu_log, "console:", console_tail(self.rundir)] if x)
        fix = "check the console above; `labkit doctor` checks the machine"
        if self.accel == "kvm":
            fix = "try LABKIT_ACCEL=tcg; `labkit doctor` says why KVM was chosen"
        raise VMError(f"{what} (accel={self.accel}{', clock=icount' if self.clock == 'icount' else ''})", fix=fix,
                      details=details)

    def alive(self):
        if self.proc is not None:
            return self.proc.poll() is None
        if self.pid:
            try:
                os.kill(self.pid, 0)
                return True
            except ProcessLookupError:
                return False
        return False

    def kill(self):
        """Stop QEMU at once and remove what this VM left on the host."""
        if self.chan:
            self.chan.close()
            self.chan = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        elif self.pid and self.alive():
            os.kill(self.pid, signal.SIGKILL)
            for _ in range(100):
                if not self.alive():
                    break
                time.sleep(0.02)
        if self._own_rundir and self.rundir and not self.persistent:
            shutil.rmtree(self.rundir, ignore_errors=True)
        if self.guard is not None:
            self.guard.release()
            self.guard = None

    def close(self):
        """Ask the guest to stop, then make sure QEMU is gone."""
        if self.chan and self.alive():
            try:
                self.chan.send({"op": "reboot"})
                if self.proc is not None:
                    self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
