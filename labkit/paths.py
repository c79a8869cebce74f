"""Where the lab keeps things: the checkout it runs from and its cache."""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
KERNEL_SRC_DIR = PROJECT / "kernel"
BPF_DIR = PROJECT / "bpf"
BPF_BUILD_DIR = BPF_DIR / "build"
GUEST_DIR = Path(__file__).resolve().parent / "guest"


def cache_dir() -> Path:
    """``$LABKIT_CACHE``, else ``$XDG_CACHE_HOME/labkit``, else ``~/.cache/labkit``."""
    if os.environ.get("LABKIT_CACHE"):
        return Path(os.environ["LABKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "labkit"


def in_guest() -> bool:
    """True inside the lab VM (the guest init exports LABKIT_GUEST=1)."""
    return os.environ.get("LABKIT_GUEST") == "1"
