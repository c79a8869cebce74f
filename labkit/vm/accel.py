"""KVM or TCG for the lab VM: KVM only where a probe boot proved it works.

What the machine decides alone, and a probe's outcome remembered for this boot of the host;
the probe boot itself is the lab VM's (``labkit.vm.lab.choose_accel``)."""

import json
import os
from pathlib import Path

from labkit import paths


def _probe_cache() -> Path:
    return paths.run_dir() / "kvm-probe.json"


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def known_choice(kernel_dir=None, probe=True):
    """("kvm" | "tcg", why) when this machine, or a probe earlier in this boot of it, decides;
    None when only a probe boot of kernel_dir under KVM can.

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
    try:
        known = json.loads(_probe_cache().read_text())
        if known.get("boot_id") == _boot_id() and known.get("kernel") == str(kernel_dir):
            return known["accel"], known["why"]
    except (OSError, ValueError, KeyError):
        pass
    return None


def remember(kernel_dir, accel, why):
    """A probe boot's outcome, kept for this boot of the host; returns (accel, why)."""
    _probe_cache().write_text(json.dumps({"boot_id": _boot_id(), "kernel": str(kernel_dir), "accel": accel,
                                          "why": why}))
    return accel, why
