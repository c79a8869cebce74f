"""``labkit cleanup``: remove what lab runs left behind, and nothing else.

On the host: this user's own lab VMs and nothing else: the persistent one,
QEMU processes of this user whose run folder is in this user's run folder
(``labkit.paths.run_dir()``), and those run folders. Another user's VMs (a
workshop server has one per student), or another run folder's, are never
looked at; so a sweep by one student leaves every other student's VM up.
Inside the VM: namespaces, cgroups and bpffs pins whose names start with
``lk``, and tc hooks on the root namespace's ``lk*`` links (the links go).
"""

import os
import shutil
import signal

from labkit import paths


def sweep() -> list[str]:
    return guest_sweep() if paths.in_guest() else host_sweep()


def lab_qemu_pids(run_dir=None, uid=None) -> list[int]:
    """Lab QEMU processes of this user (uid) whose run folder lies in run_dir
    (default: this user's run folder)."""
    base = os.path.realpath(run_dir or paths.run_dir())
    uid = os.getuid() if uid is None else uid
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.stat(f"/proc/{d}").st_uid != uid:
                continue
            argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"qemu-system" not in argv[0] or b"-pidfile" not in argv[:-1]:
            continue
        # A lab VM's pid file is in its run folder, one level below the run dir.
        pidfile = os.fsdecode(argv[argv.index(b"-pidfile") + 1])
        if os.path.realpath(os.path.dirname(os.path.dirname(pidfile))) == base:
            pids.append(int(d))
    return pids


def host_sweep() -> list[str]:
    from labkit.vm import persistent

    done = []
    base = paths.run_dir()
    if persistent.stop_persistent():
        done.append("stopped the persistent lab VM")
    for pid in lab_qemu_pids():
        try:
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed lab QEMU pid {pid}")
        except ProcessLookupError:
            pass
    for pattern in ("run-*", "spare", "spare-new-*", "build-*"):  # VMs, the spare, warm snapshot builds
        for d in base.glob(pattern):
            shutil.rmtree(d, ignore_errors=True)
            done.append(f"removed {d}")
    return done or ["nothing to clean"]


def guest_sweep() -> list[str]:
    from labkit.guest.cgroup import ROOT, lab_cgroups, remove
    from labkit.guest.netns import lab_namespaces, sh

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
