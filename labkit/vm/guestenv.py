"""What a lab VM's guest is given: the host's Python interpreter, the environment
its commands run with (only PASS_ENV and LABKIT_* variables of the host's pass
through), and the host folders it sees at their own paths."""

import os
import sys
from pathlib import Path

from labkit import paths

PASS_ENV = ("CI", "TERM", "PYTEST_ADDOPTS", "PYTHONPATH", "VIRTUAL_ENV", "COLUMNS")


def guest_python():
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
    # The guest cannot tell a shared read-only install from a checkout of the
    # user's own: it finds the BPF objects where the host compiled them.
    env["LABKIT_BPF_BUILD"] = str(paths.bpf_build_dir())
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def guest_visible() -> list:
    """Host folders the guest needs at their own paths: the checkout, this
    Python environment, the compiled BPF objects and this user's lab state."""
    return [paths.PROJECT, Path(sys.prefix), paths.bpf_build_dir(), paths.state_dir()]
