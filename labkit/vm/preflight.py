"""What this machine can do for the lab, checked one item at a time.

One list feeds ``labkit doctor``, the tests' skip reasons and (later) the
notebooks' first cell. Each check says what it found and, when it fails,
the command that fixes it.
"""

import os
import sys
from dataclasses import dataclass

from labkit import paths, tools


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self):
        mark = "ok " if self.ok else "!! "
        text = f"{mark}{self.name:<18} {self.detail}"
        if not self.ok and self.fix:
            text += f"\n   {'':<18} fix: {self.fix}"
        return text


def host_checks(probe_kvm=True) -> list[Check]:
    from labkit import kernel
    from labkit.errors import LabError
    from labkit.vm import persistent
    from labkit.vm.lab import choose_accel
    from labkit.vm.qemu import boot_image

    checks = [Check("python", sys.version_info >= (3, 11), f"{sys.version.split()[0]} at {sys.executable}",
                    "use Python 3.11 or newer")]
    if tools.in_browser():
        # JupyterLite: no machine to check, the lessons replay their recordings.
        return checks + [Check("lab VM", False, "none in the browser: the lessons replay the recordings made on "
                               "the lab kernel", "for the live lab: git clone the lab on Debian 12, ./lab open")]
    for program in ("qemu-system-x86_64", "clang", "bpftool"):
        path = tools.which(program)
        checks.append(Check(program, bool(path), path or "not found",
                            f"sudo apt-get install {tools.PACKAGES[program]}"))
    libbpf = _find_libbpf()
    checks.append(Check("libbpf", bool(libbpf), libbpf or "libbpf.so.1 not found", "sudo apt-get install libbpf1"))
    kdir = None
    try:
        kdir = kernel.kernel_path()
        info = kernel.info(kdir) if (kdir / "build.json").exists() else {}
        kernel_check = Check("lab kernel", True, f"{info.get('release', '?')} in {kdir}")
    except LabError as exc:
        kernel_check = Check("lab kernel", False, exc.message, exc.fix)
    try:
        tarball = kernel.source_tarball()
        checks.append(Check("kernel source", True, f"{kernel.source_version()} ({tarball})"))
    except LabError as exc:
        # Only a build needs the source: a kernel imported or shared by an
        # instructor runs without it.
        checks.append(Check("kernel source", kdir is not None,
                            "not needed: the lab kernel is installed" if kdir else exc.message, exc.fix))
    checks.append(kernel_check)
    accel, why = choose_accel(kdir, probe=probe_kvm and kdir is not None)
    checks.append(Check("accel", True, f"{accel}: {why}"))
    checks.append(_snapshot_check(kdir, boot_image(kdir) if kdir else None, accel))
    state = persistent.persistent_state()
    checks.append(Check("persistent vm", True,
                        f"running (pid {state['pid']}, {state['accel']})" if state else "none (labkit vm start)"))
    build_dir = paths.bpf_build_dir()
    built = sorted(p.name for p in build_dir.glob("*.bpf.o")) if build_dir.exists() else []
    checks.append(Check("bpf objects", bool(built), f"{len(built)} in {build_dir}" if built
                        else "none built", "run: labkit bpf build"))
    return checks


def _snapshot_check(kdir, vmlinux, accel) -> Check:
    """Whether a lab VM of the default size restores a warm snapshot or boots cold."""
    from labkit.errors import LabError
    from labkit.vm import snapshot, warmbuild

    if kdir is None or not vmlinux.is_file():
        return Check("warm snapshot", True, "none: no lab kernel yet")
    try:
        key = warmbuild.key_for(kdir, vmlinux, accel=accel, cpus=2, memory="1G")
    except LabError as exc:
        return Check("warm snapshot", False, exc.message, exc.fix)
    found, why = snapshot.load(key)
    root = snapshot.snapshots_dir()
    if found:
        return Check("warm snapshot", True, f"ready: {found.summary()}; lab VMs restore it")
    if snapshot.writable():
        return Check("warm snapshot", True, f"not ready ({why}): the next lab VM start makes it (~20 s), "
                     "later ones restore it")
    return Check("warm snapshot", False, f"{why}; {root} is read-only here, so lab VMs boot cold",
                 "ask whoever runs the workshop to restart the hub (labkit hub start makes it)")


def guest_checks() -> list[Check]:
    """Inside the VM: is this the lab kernel, and is everything mounted?"""
    checks = [Check("root", os.geteuid() == 0, f"uid {os.geteuid()}", "run inside the lab VM: labkit vm run -- ...")]
    release = os.uname().release
    btf = "/sys/kernel/btf/vmlinux"
    has_storage = False
    try:
        with open(btf, "rb") as fh:
            has_storage = b"bpf_skb_storage_get" in fh.read()
    except OSError:
        pass
    checks.append(Check("skb storage", has_storage, f"kernel {release}: "
                        + ("bpf_skb_storage_get in BTF" if has_storage else "no bpf_skb_storage_get in BTF"),
                        "boot the lab kernel: labkit vm run -- ..."))
    for mnt, fs in (("/sys/fs/bpf", "bpf"), ("/sys/kernel/tracing", "tracefs"), ("/sys/fs/cgroup", "cgroup2")):
        checks.append(Check(fs, _mounted(mnt, fs), mnt, f"mount -t {fs} none {mnt}"))
    return checks


def lab_kernel_here() -> bool:
    """True when this process runs as root on the lab kernel (the lab test tier)."""
    return all(c.ok for c in guest_checks()[:2])


def _mounted(path, fstype):
    try:
        with open("/proc/mounts") as fh:
            return any(line.split()[1] == path and line.split()[2] == fstype for line in fh)
    except OSError:
        return False


def _find_libbpf():
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"):
        p = os.path.join(d, "libbpf.so.1")
        if os.path.exists(p):
            return p
    return None


def report(checks) -> str:
    return "\n".join(c.line() for c in checks)
