"""The host tier: the lab as a user drives it from outside the VM."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import paths
from tests.conftest import need

PROJECT = paths.PROJECT


def labkit(*args, env=None, timeout=300, cwd=None):
    """Run the labkit CLI as a user would; return the CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or PROJECT)


def lab_qemus():
    from labkit.cleanup import lab_qemu_pids

    return lab_qemu_pids()


@pytest.fixture
def vm_ready():
    """Skip (fail in CI) unless QEMU, the lab kernel and the BPF objects are there."""
    from labkit import kernel, tools
    from labkit.errors import LabError

    try:
        tools.require("qemu-system-x86_64")
        kdir = kernel.kernel_path()
    except LabError as exc:
        need(False, exc.message, exc.fix or "run: ./lab setup")
    need((paths.bpf_build_dir() / "storage_basic.bpf.o").exists(), "BPF objects are not built",
         "run: labkit bpf build")
    before = set(lab_qemus())
    yield Path(kdir)
    left = set(lab_qemus()) - before
    assert not left, f"QEMU processes left behind: {left}"
