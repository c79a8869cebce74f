"""The QEMU side of the lab VM: its command line, its console, and the guard
that cleans up after it.

What the guest may touch of the host is decided here. The host's ``/`` is
exported read-only (the guest runs the same Python, bpftool and objects);
the only writable export is the learner's working directory, mounted in
the guest at the same path. Anything else a command writes outside it
fails with EROFS, whatever it runs as in the guest. On a shared machine
QEMU runs as the learner's own user, so the read-only root shows the guest
only what that user may read.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from labkit import paths, tools
from labkit.errors import VMError

# Folders that never become the guest's writable export, nor anything under
# them: they are the host system, not a learner's work (``/``, ``/var`` and
# the shared ``/tmp`` themselves are refused, folders under them are not).
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
                "/run", "/sbin", "/sys", "/usr")


def check_workdir(workdir) -> Path:
    """The directory the guest may write, made absolute; a system folder is refused."""
    path = Path(os.path.abspath(workdir))
    text = str(path)
    if text in ("/", "/var", "/tmp", "/var/tmp") or any(text == d or text.startswith(d + "/") for d in SYSTEM_TREES):
        raise VMError(f"the lab VM may write only a working folder of yours, not {path}",
                      fix="run from your lab folder (e.g. cd ~/lab), or pass workdir=")
    if not path.is_dir():
        raise VMError(f"the lab VM's working folder {path} does not exist",
                      fix="create it, or run from another folder")
    return path


def cmdline_path(path) -> str:
    """A host path as one kernel command-line word (the guest's init decodes %XX)."""
    return urllib.parse.quote(str(path), safe="/")


def _fsdev_path(path) -> str:
    return str(path).replace(",", ",,")  # QEMU's option syntax doubles a comma


# ---- the TSC ---------------------------------------------------------------------


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


# ---- the clock ------------------------------------------------------------------------

# "wall": the guest's clocks follow real time (TCG with a thread per vCPU, or KVM).
# "icount": QEMU counts guest instructions and moves the virtual clock 1 ns per
# instruction (-icount shift=0, single-threaded TCG, one vCPU); with the guest's TSC
# declared at 1 GHz, every time the guest measures (the kernel's BPF run_time_ns
# among them) is a count of guest instructions, the same on any host.
CLOCKS = ("wall", "icount")
ICOUNT_TSC_KHZ = 1_000_000  # 1 GHz of virtual time: one guest instruction per TSC tick


def clock_config(clock, accel, cpus):
    """(accel, cpus, why) for a VM with this clock: accel None is chosen at boot
    (why None), except under icount, which is TCG's own and runs one vCPU
    whatever cpus says. accel="kvm" with icount is a VMError."""
    if clock not in CLOCKS:
        raise VMError(f"unknown lab VM clock {clock!r}", fix=f"use one of: {', '.join(CLOCKS)}")
    if clock == "wall":
        return accel, cpus, None
    if accel not in (None, "tcg"):
        raise VMError(f"clock='icount' cannot run under accel={accel!r}: QEMU counts guest instructions only "
                      "when it translates them (TCG); under KVM the guest runs on the real CPU",
                      fix="leave accel unset (or accel='tcg') for clock='icount', or use clock='wall' under KVM")
    return "tcg", 1, "clock='icount': single-threaded TCG on one vCPU, counting instructions"


# ---- the command line ---------------------------------------------------------------


def boot_image(kernel_dir: Path) -> Path:
    """What a lab VM boots from kernel_dir: vmlinux through its PVH entry, but the debug
    kernel's bzImage through the decompressor (its KASAN needs the early setup PVH skips)."""
    bz = Path(kernel_dir) / "bzImage"
    return bz if bz.is_file() else Path(kernel_dir) / "vmlinux"


def has_kasan(kernel: Path) -> bool:
    """Whether the kernel next to its build's ``config`` was built with KASAN (the debug flavour)."""
    try:
        return "CONFIG_KASAN=y" in (Path(kernel).parent / "config").read_text().splitlines()
    except OSError:
        return False


def qemu_argv(kernel: Path, rundir: Path, *, accel: str, cpus: int, memory: str, python: str,
              workdir: Path, visible=(), clock="wall", init=None, append_extra=(), append=None,
              tsc_khz=None, extra=()):
    """QEMU's argv. workdir: the one host folder the guest may write. visible:
    host folders the guest must see at their own path even where its own
    mounts (/tmp, /run) cover them (the checkout, the Python environment).
    clock: "wall" or "icount" (see clock_config). A warm snapshot's build
    (``labkit.vm.snapshot``) boots another init with words of its own
    (append_extra); its restore passes the kernel command line it was built
    with (append) and QEMU's -incoming (extra). tsc_khz: the host's TSC rate
    (None: measure it; 0: leave it to the guest)."""
    icount = clock == "icount"
    if icount and (accel != "tcg" or cpus != 1):
        raise VMError(f"clock='icount' needs accel='tcg' and one vCPU, not accel={accel!r}, cpus={cpus}")
    if append is None:
        append = kernel_append(kernel, python=python, workdir=workdir, visible=visible, clock=clock, init=init,
                               extra=append_extra, tsc_khz=tsc_khz)
    accel_opt = "kvm" if accel == "kvm" else "tcg,thread=single" if icount else "tcg,thread=multi"
    return [
        tools.require("qemu-system-x86_64"),
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-machine", "q35", "-accel", accel_opt, "-cpu", "host" if accel == "kvm" else "max",
        # 1 ns of virtual time per guest instruction; an idle guest's clock jumps to its
        # next timer instead of waiting in real time; no pacing against the host's clock.
        *(["-icount", "shift=0,sleep=off,align=off"] if icount else []),
        "-smp", str(cpus), "-m", memory,
        "-kernel", str(kernel), "-append", append,
        # The host's root, read-only: QEMU refuses every write through it.
        "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=root,mount_tag=root",
        # ... and again (a 9p export mounts once), for init and the agent to
        # bind folders the guest's own /tmp and /run cover.
        "-fsdev", "local,id=hostro,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostro,mount_tag=hostro",
        # The learner's working folder: the only place the guest writes.
        "-fsdev", f"local,id=work,path={_fsdev_path(workdir)},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=work,mount_tag=work",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=ctl,path={_fsdev_path(rundir / 'ctl.sock')},server=on,wait=off",
        "-device", "virtserialport,chardev=ctl,name=labkit.0",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{rundir / 'console.log'}",
        "-pidfile", str(rundir / "qemu.pid"),
        *extra,
    ]


def kernel_append(kernel: Path, *, python, workdir, visible=(), clock="wall", init=None, extra=(), tsc_khz=None):
    """The guest kernel's command line (see qemu_argv)."""
    icount = clock == "icount"
    if tsc_khz is None:
        tsc_khz = ICOUNT_TSC_KHZ if icount else host_tsc_khz()
    return " ".join([
        "console=ttyS0",
        "root=root", "rootfstype=9p",
        "rootflags=trans=virtio,version=9p2000.L,cache=loose,msize=262144", "ro",
        f"init={init or paths.GUEST_DIR / 'init'}",
        "panic=-1", "quiet", "loglevel=4",
        # The guest has no HPET or PM timer (no ACPI), so the TSC is its only
        # clocksource. Under a loaded TCG its calibration against the PIT can
        # fail ("Marking TSC unstable due to could not calculate TSC khz") and
        # the kernel falls back to jiffies: bpf_ktime_get_ns() then moves in 4 ms
        # steps and per-packet times read 0. TCG's TSC is the host's, so give the
        # guest the host's rate and skip the calibration; and trust the TSC.
        # Under icount the TSC follows the virtual clock, one tick per guest
        # instruction: the guest is told 1 GHz, so its nanoseconds are instructions.
        *([f"tsc_early_khz={tsc_khz}"] if tsc_khz else []),
        "tsc=reliable",
        # KASAN reports only its first fault unless told otherwise: every test's own must show.
        *(["kasan_multi_shot"] if has_kasan(kernel) else []),
        *(["labkit.clock=icount"] if icount else []),  # for the guest's programs (labkit.bench.storage) to say so
        f"labkit.python={cmdline_path(python)}",
        f"labkit.bind={','.join(cmdline_path(p) for p in dict.fromkeys(map(str, visible)))}",
        f"labkit.work={cmdline_path(workdir)}",
        *extra,
    ])


def die_with_parent():
    """preexec_fn: SIGKILL this child when the thread that started it dies."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def console_tail(rundir, lines=30) -> str:
    try:
        text = (Path(rundir) / "console.log").read_bytes()[-20000:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


# ---- the guard ------------------------------------------------------------------------

# Runs with `python -S`: waits for its stdin to close (the VM's owner closed
# it, or died however it died: an OOM kill or SIGKILL runs no Python
# cleanup), then makes sure QEMU is gone and removes the run folder.
_GUARD = r"""
import os, select, shutil, signal, sys
fd, dirs = int(sys.argv[1]), sys.argv[2:]
signal.signal(signal.SIGINT, signal.SIG_IGN)
while True:
    try:
        if not os.read(0, 4096):
            break
    except InterruptedError:
        continue
try:
    signal.pidfd_send_signal(fd, signal.SIGKILL)
except OSError:
    pass
select.select([fd], [], [], 10)
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


class Guard:
    """A small process that outlives the VM's owner by the moment it takes to
    kill QEMU and remove its run folder: nothing is left whatever kills the
    owner (Jupyter's kernel restart, the OOM killer, SIGKILL). more: other
    folders to remove with it (a snapshot's half-written build)."""

    def __init__(self, qemu_pid: int, rundir: Path, *more: Path):
        self.proc = None
        self.pipe = None
        try:
            pidfd = os.pidfd_open(qemu_pid)
        except (OSError, AttributeError):
            return  # QEMU already gone, or no pidfd: the owner's own cleanup must do
        r, w = os.pipe()
        try:
            self.proc = subprocess.Popen([sys.executable, "-S", "-c", _GUARD, str(pidfd), str(rundir), *map(str, more)],
                                         stdin=r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         pass_fds=(pidfd,), start_new_session=True)
            self.pipe = w
        except OSError:
            os.close(w)
        finally:
            os.close(r)
            os.close(pidfd)

    def release(self, wait=True):
        """The owner cleaned up itself: let the guard go (it finds nothing left)."""
        if self.pipe is not None:
            os.close(self.pipe)
            self.pipe = None
        if self.proc is not None and wait:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
