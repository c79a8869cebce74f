"""Which warm snapshot a lab VM restores, and QEMU's command line to restore it.

``choose`` finds the snapshot for this kernel and machine
(``labkit.vm.snapshot``), makes it first where none is fresh and the
snapshots folder is this user's (``labkit.vm.warmbuild``), and otherwise
says in one line why the VM boots cold: the instruction-count clock, a
read-only shared folder whose snapshot is missing or stale, a build that
failed.
"""

import shlex
from pathlib import Path

from labkit.errors import VMError
from labkit.vm import snapshot, warmbuild
from labkit.vm.qemu import host_tsc_khz, qemu_argv

ICOUNT_COLD = ("clock='icount' boots cold: the warm snapshot is saved without instruction counting, "
               "and QEMU restores a machine only under the clock it was saved with")


def _release(kernel_dir: Path):
    from labkit import kernel

    try:
        return kernel.info(kernel_dir).get("release")
    except (OSError, ValueError):
        return None


def choose(kernel_dir: Path, vmlinux: Path, *, accel, cpus, memory, clock, progress=None):
    """(Snapshot or None, why it is None)."""
    if clock != "wall":
        return None, ICOUNT_COLD
    key = warmbuild.key_for(kernel_dir, vmlinux, accel=accel, cpus=cpus, memory=memory)
    found, why = snapshot.load(key)
    if found and accel != "kvm" and not snapshot.tsc_fits(found, host_tsc_khz()):
        found, why = None, "the host's TSC rate is not the one the warm snapshot's guest was told"
    if found:
        return found, ""
    if not snapshot.writable():
        return None, f"{why} (the snapshots in {snapshot.snapshots_dir()} are read-only here)"
    failed = snapshot.failure(key)
    if failed:
        return None, f"the warm snapshot could not be made lately ({failed}); it is tried again when a file " \
                     "it loads changes, or in an hour"
    try:
        return warmbuild.build(kernel_dir, vmlinux, accel=accel, cpus=cpus, memory=memory,
                               release=_release(kernel_dir), progress=progress), ""
    except VMError as exc:
        return None, f"the warm snapshot could not be made: {exc.message}"


def restore_argv(vmlinux: Path, rundir: Path, found, *, accel, cpus, memory, python, workdir) -> list:
    """QEMU restoring found: its machine as it was saved, this VM's folders and sockets."""
    return qemu_argv(vmlinux, rundir, accel=accel, cpus=cpus, memory=memory, python=python, workdir=workdir,
                     append=found.append, extra=["-incoming", f"exec:cat {shlex.quote(str(found.state))}"])
