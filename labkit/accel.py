"""KVM or TCG for the lab VM: KVM only where a probe boot proved it works."""

import json
import os
import time
from pathlib import Path

from labkit import paths
from labkit.errors import LabError


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
    cache = paths.run_dir() / "kvm-probe.json"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    try:
        known = json.loads(cache.read_text())
        if known.get("boot_id") == boot_id and known.get("kernel") == str(kernel_dir):
            return known["accel"], known["why"]
    except (OSError, ValueError, KeyError):
        pass
    from labkit.vm import Lab

    t0 = time.monotonic()
    try:
        with Lab(kernel_dir=kernel_dir, accel="kvm", boot_timeout=20) as lab:
            lab.run(["true"], timeout=10)
        accel, why = "kvm", f"a probe boot under KVM answered in {time.monotonic() - t0:.1f}s"
    except LabError as exc:
        accel, why = "tcg", f"a probe boot under KVM failed ({exc.message})"
    cache.write_text(json.dumps({"boot_id": boot_id, "kernel": str(kernel_dir), "accel": accel, "why": why}))
    return accel, why
