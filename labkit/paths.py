"""Where the lab keeps things: the checkout it runs from and each user's own state.

The checkout (``PROJECT``) may be shared and read-only (a workshop server
installs one copy for every student); everything a user's runs write lives
under that user's cache, in folders only they can enter (mode 0700).
"""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
KERNEL_SRC_DIR = PROJECT / "kernel"
BPF_DIR = PROJECT / "bpf"
BPF_BUILD_DIR = BPF_DIR / "build"
GUEST_DIR = Path(__file__).resolve().parent / "guest"
# What replay reads of the checkout, and where a wheel of labkit carries it (pyproject.toml's
# package-dir): a JupyterLite site has the wheel and no checkout.
SHIPPED = {"notebooks": "notebooks", "benchmarks/results": "results"}


def shipped(rel) -> Path:
    """A file or folder of the checkout that replay reads ("notebooks/data/basic-udp.jsonl"): in the
    checkout, else in the copy inside the package (a wheel installed where there is no checkout)."""
    rel = str(rel).strip("/")
    path = PROJECT / rel
    if path.exists():
        return path
    for src, dst in SHIPPED.items():
        if rel == src or rel.startswith(src + "/"):
            return Path(__file__).resolve().parent / dst / rel[len(src):].lstrip("/")
    return path


def shown(path) -> str:
    """A path shipped() gave, as the checkout names it ("notebooks/data/basic-udp.jsonl"), wherever it is."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT))
    except ValueError:
        pass
    pkg = Path(__file__).resolve().parent
    for src, dst in SHIPPED.items():
        try:
            return str(Path(src) / path.relative_to(pkg / dst))
        except ValueError:
            continue
    return str(path)


def cache_dir() -> Path:
    """``$LABKIT_CACHE``, else ``$XDG_CACHE_HOME/labkit``, else ``~/.cache/labkit``."""
    if os.environ.get("LABKIT_CACHE"):
        return Path(os.environ["LABKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "labkit"


def private_dir(path) -> Path:
    """path, created if needed, entered only by this user (0700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def run_dir() -> Path:
    """Where this user's lab VMs keep their run folders (control socket, console, pid):
    ``$LABKIT_RUN_DIR``, else ``<cache>/vm``; mode 0700, so no other user reaches a VM's socket."""
    if os.environ.get("LABKIT_RUN_DIR"):
        return private_dir(os.environ["LABKIT_RUN_DIR"])
    private_dir(cache_dir())
    return private_dir(cache_dir() / "vm")


def project_writable() -> bool:
    """Can this user write the checkout (their own clone), or is it a shared install?"""
    return os.access(PROJECT, os.W_OK)


def state_dir() -> Path:
    """This user's scratch space for lab files (logs, compiled cells): the checkout's
    ``.lab`` when the checkout is theirs, else ``<cache>/state`` (0700)."""
    if project_writable():
        d = PROJECT / ".lab"
        d.mkdir(exist_ok=True)
        return d
    private_dir(cache_dir())
    return private_dir(cache_dir() / "state")


def bpf_build_dir() -> Path:
    """Where the lab's BPF objects are compiled: ``bpf/build`` in the user's own
    checkout, else under the user's cache (a shared install is read-only)."""
    if os.environ.get("LABKIT_BPF_BUILD"):
        return Path(os.environ["LABKIT_BPF_BUILD"])
    if project_writable():
        return BPF_BUILD_DIR
    return private_dir(cache_dir()) / "bpf-build"


def in_guest() -> bool:
    """True inside the lab VM (the guest init exports LABKIT_GUEST=1)."""
    return os.environ.get("LABKIT_GUEST") == "1"
