"""``labkit cleanup``: remove what lab runs left behind, and nothing else.

On the host: the persistent lab VM, QEMU processes booted by labkit (their
command line names this checkout's guest init) and their run directories.
Inside the VM: namespaces, cgroups and bpffs pins whose names start with
``lk``, and tc hooks on the root namespace's ``lk*`` links (the links go).
"""

import os
import shutil
import signal

from labkit import paths


def sweep() -> list[str]:
    return guest_sweep() if paths.in_guest() else host_sweep()


def lab_qemu_pids() -> list[int]:
    marker = f"init={paths.GUEST_DIR / 'init'}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read()
        except OSError:
            continue
        if b"qemu-system" in cmd and marker in cmd:
            pids.append(int(d))
    return pids


def host_sweep() -> list[str]:
    from labkit import vm

    done = []
    if vm.stop_persistent():
        done.append("stopped the persistent lab VM")
    for pid in lab_qemu_pids():
        try:
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed lab QEMU pid {pid}")
        except ProcessLookupError:
            pass
    base = paths.cache_dir() / "vm"
    if base.exists():
        for d in base.glob("run-*"):
            shutil.rmtree(d, ignore_errors=True)
            done.append(f"removed {d}")
    return done or ["nothing to clean"]


def guest_sweep() -> list[str]:
    from labkit.cgroup import ROOT, lab_cgroups, remove
    from labkit.netns import lab_namespaces, sh

    done = []
    for ns in lab_namespaces():
        sh("ip", "netns", "del", ns, check=False)
        done.append(f"deleted netns {ns}")
    for line in sh("ip", "-o", "link", "show", check=False).splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith("lk"):
            sh("ip", "link", "del", name, check=False)
            done.append(f"deleted link {name}")
    for cg in lab_cgroups():
        try:
            remove(os.path.join(ROOT, cg))
            done.append(f"removed cgroup {cg}")
        except OSError as exc:
            done.append(f"could not remove cgroup {cg}: {exc}")
    for pin in os.listdir("/sys/fs/bpf"):
        if pin.startswith("lk"):
            p = os.path.join("/sys/fs/bpf", pin)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            done.append(f"removed pin {p}")
    return done or ["nothing to clean"]
