"""The lab VM: QEMU booting the lab kernel, commands run as root inside.

The guest's root filesystem is the host's own ``/`` over 9p (read-only,
``cache=loose``), so it runs the same Python environment, bpftool and
compiled BPF objects as the host. The host's ``/`` is also mounted
read-write at ``/run/labkit/host``; before a command runs the agent binds
the command's working directory (and the project checkout) from there, so
they are writable at the same path. ``vmlinux`` boots directly through its
PVH entry point. Commands travel as JSON lines over a virtio-serial port to
``labkit/guest/agent.py``.

    with Lab() as lab:
        res = lab.run(["bpftool", "prog", "show"])
        print(res.code, res.stdout)

A command past its deadline is reported with the console tail and the VM
is killed; the VM process never outlives a ``Lab`` (QEMU gets SIGKILL if
the Python process dies). ``labkit vm start`` keeps one VM running for
reuse by ``labkit vm run``; ``labkit vm stop`` or ``labkit cleanup`` ends it.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from labkit import paths, tools
from labkit.errors import GuestTimeout, LabError, VMError

BOOT_TIMEOUT = float(os.environ.get("LABKIT_BOOT_TIMEOUT", "90"))
DEFAULT_TIMEOUT = 600.0
PASS_ENV = ("CI", "TERM", "PYTEST_ADDOPTS", "PYTHONPATH", "VIRTUAL_ENV", "COLUMNS")


@dataclass
class Result:
    """What a guest command did: its exit code and its output."""

    code: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


# ---- acceleration ------------------------------------------------------------


def choose_accel(kernel_dir=None, probe=True):
    """("kvm" | "tcg", why). KVM only where a probe boot proved it works.

    ``$LABKIT_ACCEL`` forces a choice. Under PVM (module kvm_pvm) a stock
    guest kernel crawls and hangs instead of failing, so it is never tried.
    """
    forced = os.environ.get("LABKIT_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, f"LABKIT_ACCEL={forced}"
    if not os.path.exists("/dev/kvm"):
        return "tcg", "no /dev/kvm on this machine"
    if os.path.exists("/sys/module/kvm_pvm"):
        return "tcg", "/dev/kvm is PVM (kvm_pvm), under which the lab kernel does not boot"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is not accessible to this user (add yourself to group kvm)"
    if not probe or kernel_dir is None:
        return "tcg", "KVM not probed yet"
    cache = paths.cache_dir() / "vm" / "kvm-probe.json"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    try:
        known = json.loads(cache.read_text())
        if known.get("boot_id") == boot_id and known.get("kernel") == str(kernel_dir):
            return known["accel"], known["why"]
    except (OSError, ValueError, KeyError):
        pass
    t0 = time.monotonic()
    try:
        with Lab(kernel_dir=kernel_dir, accel="kvm", boot_timeout=20) as lab:
            lab.run(["true"], timeout=10)
        accel, why = "kvm", f"a probe boot under KVM answered in {time.monotonic() - t0:.1f}s"
    except LabError as exc:
        accel, why = "tcg", f"a probe boot under KVM failed ({exc.message})"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"boot_id": boot_id, "kernel": str(kernel_dir), "accel": accel, "why": why}))
    return accel, why


# ---- QEMU ----------------------------------------------------------------------


_TSC_KHZ = []


def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz, measured with rdtsc against CLOCK_MONOTONIC
    over 50 ms (x86-64 only; None elsewhere or when it cannot run code)."""
    if _TSC_KHZ:
        return _TSC_KHZ[0]
    khz = None
    if os.uname().machine == "x86_64":
        try:
            import ctypes
            import mmap

            # rdtsc; shl rdx, 32; or rax, rdx; ret
            code = bytes.fromhex("0f3148c1e2204809d0c3")
            buf = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
            buf.write(code)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
            t0, c0 = time.monotonic_ns(), rdtsc()
            time.sleep(0.05)
            t1, c1 = time.monotonic_ns(), rdtsc()
            khz = round((c1 - c0) * 1_000_000 / (t1 - t0))
            del rdtsc
            if not 100_000 < khz < 10_000_000:  # not a plausible x86 TSC: leave it to the guest
                khz = None
        except (OSError, ValueError, TypeError):
            khz = None
    _TSC_KHZ.append(khz)
    return khz


def qemu_argv(kernel: Path, rundir: Path, *, accel: str, cpus: int, memory: str, python: str):
    append = " ".join([
        "console=ttyS0",
        "root=root", "rootfstype=9p",
        "rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=262144", "ro",
        f"init={paths.GUEST_DIR / 'init'}",
        "panic=-1", "quiet", "loglevel=4",
        # The guest has no HPET or PM timer (no ACPI), so the TSC is its only
        # clocksource. Under a loaded TCG its calibration against the PIT can
        # fail ("Marking TSC unstable due to could not calculate TSC khz") and
        # the kernel falls back to jiffies: bpf_ktime_get_ns() then moves in 4 ms
        # steps and per-packet times read 0. TCG's TSC is the host's, so give the
        # guest the host's rate and skip the calibration; and trust the TSC.
        *([f"tsc_early_khz={host_tsc_khz()}"] if host_tsc_khz() else []),
        "tsc=reliable",
        f"labkit.python={python}",
        f"labkit.bind={paths.PROJECT},{sys.prefix}",
    ])
    accel_opt = "kvm" if accel == "kvm" else "tcg,thread=multi"
    return [
        tools.require("qemu-system-x86_64"),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-machine", "q35", "-accel", accel_opt, "-cpu", "host" if accel == "kvm" else "max",
        "-smp", str(cpus), "-m", memory,
        "-kernel", str(kernel), "-append", append,
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=root",
        "-fsdev", "local,id=hostrw,path=/,security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostrw,mount_tag=hostrw",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=ctl,path={rundir / 'ctl.sock'},server=on,wait=off",
        "-device", "virtserialport,chardev=ctl,name=labkit.0",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{rundir / 'console.log'}",
        "-pidfile", str(rundir / "qemu.pid"),
    ]


def _die_with_parent():
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def console_tail(rundir, lines=30) -> str:
    try:
        text = (Path(rundir) / "console.log").read_bytes()[-20000:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


# ---- the channel -----------------------------------------------------------------


class Channel:
    """JSON lines over the QEMU chardev socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, msg):
        self.sock.sendall((json.dumps(msg) + "\n").encode())

    def recv(self, timeout):
        """One message, or None if none arrived within timeout seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the VM closed the channel")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _connect(path, deadline, alive):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if not alive() or time.monotonic() > deadline:
                return None
            time.sleep(0.02)


# ---- the VM ------------------------------------------------------------------------


class Lab:
    """One lab VM: boot on enter, power off on exit. Not thread-safe.

    kernel_dir: the directory ``labkit kernel path`` prints (default: the
    current lab kernel). accel: "kvm", "tcg" or None to choose. persistent:
    the QEMU process survives this Python process (``labkit vm start``).
    """

    def __init__(self, kernel_dir=None, *, accel=None, cpus=2, memory="1G",
                 boot_timeout=BOOT_TIMEOUT, persistent=False, rundir=None):
        self.kernel_dir = Path(kernel_dir) if kernel_dir else None
        self.accel = accel
        self.accel_why = None
        self.cpus = cpus
        self.memory = memory
        self.boot_timeout = boot_timeout
        self.persistent = persistent
        self.rundir = Path(rundir) if rundir else None
        self.proc = None
        self.pid = None
        self.chan = None
        self.boot_seconds = None
        self.release = None
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
        vmlinux = self.kernel_dir / "vmlinux"
        if not vmlinux.is_file():
            raise VMError(f"no vmlinux in {self.kernel_dir}", fix="run: labkit kernel build")
        tools.require("qemu-system-x86_64")  # before anything is created on disk
        if self.accel is None:
            self.accel, self.accel_why = choose_accel(self.kernel_dir)
        if self.rundir is None:
            base = paths.cache_dir() / "vm"
            base.mkdir(parents=True, exist_ok=True)
            self.rundir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
            self._own_rundir = True
        try:
            argv = qemu_argv(vmlinux, self.rundir, accel=self.accel, cpus=self.cpus,
                             memory=self.memory, python=_guest_python())
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
                    preexec_fn=None if self.persistent else _die_with_parent,
                    start_new_session=True,
                )
            self.pid = self.proc.pid
            self._await_ready(t0)
        except BaseException:
            self.kill()  # QEMU, if it started, and the run directory
            raise

    def _await_ready(self, t0):
        deadline = t0 + self.boot_timeout
        sock = _connect(self.rundir / "ctl.sock", deadline, self.alive)
        if sock is None:
            self._fail_boot("QEMU did not open its control socket")
        self.chan = Channel(sock)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                break
            try:
                msg = self.chan.recv(min(left, 0.5))
            except EOFError:
                break
            if msg and msg.get("ev") == "ready":
                self.boot_seconds = time.monotonic() - t0
                self.release = msg.get("release")
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
        raise VMError(f"{what} (accel={self.accel})", fix=fix, details=details)

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

    # -- commands --

    def spawn(self, argv, *, cwd, env=None, stdin=False) -> int:
        """Start argv as root in the guest without waiting: its id on the channel
        (``out``/``exit`` events carry it; ``input``, ``signal`` and ``kill`` take it).
        cwd and the project are bound writable."""
        self._ids += 1
        msg = {"op": "run", "id": self._ids, "argv": [str(a) for a in argv], "cwd": str(cwd),
               "env": guest_env(env), "bind": sorted({str(cwd), str(paths.PROJECT)})}
        if stdin:
            msg["stdin"] = True
        self.chan.send(msg)
        return self._ids

    def run(self, argv, *, cwd=None, env=None, timeout=DEFAULT_TIMEOUT, stream=False, check=False,
            input=None) -> Result:
        """Run argv as root in the guest; return its exit code and output.

        cwd defaults to the host's current directory (bound writable in the
        guest); env adds to the guest's base environment; stream copies the
        output to this process's stdout/stderr as it arrives. Past timeout
        seconds the VM is killed and GuestTimeout raised.
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
            while True:
                left = deadline - time.monotonic()
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
                    if stream:
                        target = sys.stdout if msg["fd"] == 1 else sys.stderr
                        target.buffer.write(data)
                        target.flush()
                elif msg["ev"] == "exit":
                    res = Result(msg["code"], bytes(out), bytes(err))
                    if check and res.code != 0:
                        raise LabError(f"{' '.join(map(str, argv))} failed in the guest with status {res.code}",
                                       details=(res.err or res.out)[-3000:])
                    return res
        except KeyboardInterrupt:
            try:
                self.chan.send({"op": "kill", "id": cid})
            except OSError:
                pass
            raise

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


def _guest_python():
    # The guest runs the host's interpreter (same path, same packages); a
    # venv's python is a symlink that resolves the same way in the guest.
    return sys.executable


def guest_env(extra=None) -> dict:
    venv_bin = os.path.dirname(sys.executable)
    host_path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    path = [venv_bin] + [p for p in host_path if p != venv_bin]
    for p in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if p not in path:
            path.append(p)
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "LABKIT_GUEST": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in os.environ.items():
        if key in PASS_ENV or key.startswith("LABKIT_"):
            env.setdefault(key, value)
    env["LABKIT_GUEST"] = "1"
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


# ---- the persistent VM (labkit vm start / run / stop) ---------------------------------


def _state_dir():
    d = paths.cache_dir() / "vm" / "persistent"
    d.mkdir(parents=True, exist_ok=True)
    return d


def persistent_state():
    """The running persistent VM's state, or None (stale state is removed)."""
    d = _state_dir()
    try:
        state = json.loads((d / "state.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(state["pid"], 0)
        alive = Path(f"/proc/{state['pid']}/cmdline").read_bytes().find(b"qemu-system") >= 0
    except (ProcessLookupError, KeyError, OSError):
        alive = False
    if not alive:
        (d / "state.json").unlink(missing_ok=True)
        return None
    return state


def start_persistent(kernel_dir=None):
    state = persistent_state()
    if state:
        return state
    d = _state_dir()
    for stale in ("ctl.sock", "console.log", "qemu.log", "qemu.pid"):
        (d / stale).unlink(missing_ok=True)
    lab = Lab(kernel_dir, persistent=True, rundir=d)
    lab.start()
    state = {"pid": lab.pid, "rundir": str(d), "kernel": str(lab.kernel_dir), "accel": lab.accel,
             "accel_why": lab.accel_why, "boot_seconds": lab.boot_seconds, "release": lab.release}
    (d / "state.json").write_text(json.dumps(state))
    lab.chan.close()
    return state


def attach_persistent(state):
    """A Lab object talking to the running persistent VM."""
    lab = Lab(state["kernel"], accel=state["accel"], persistent=True, rundir=state["rundir"])
    lab.pid = state["pid"]
    sock = _connect(Path(state["rundir"]) / "ctl.sock", time.monotonic() + 5, lab.alive)
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
    state = persistent_state()
    if not state:
        return False
    lab = Lab(state["kernel"], accel=state["accel"], persistent=True, rundir=state["rundir"])
    lab.pid = state["pid"]
    lab.kill()
    (_state_dir() / "state.json").unlink(missing_ok=True)
    return True


def open_lab():
    """The persistent VM if one runs (caller holds persistent_lock), else a fresh one (not started)."""
    state = persistent_state()
    if state:
        return attach_persistent(state), True
    return Lab(), False
