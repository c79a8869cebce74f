"""The lab tier: runs as root inside the lab VM, on the lab kernel.

Run it with ``labkit vm run -- python -m pytest tests/lab`` (``./lab test``
does). Started anywhere else every test skips with that command, and under
CI=true fails instead.
"""

import secrets

import pytest

from labkit import preflight
from tests.conftest import need


@pytest.fixture(autouse=True)
def _on_lab_kernel():
    need(preflight.lab_kernel_here(), "this test needs root on the lab kernel",
         "run: labkit vm run -- python -m pytest tests/lab")


@pytest.fixture
def token():
    """A fresh random token per test: a hard-coded answer cannot pass."""
    return secrets.randbits(31) | 0x40000000


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    """Every lab test must leave no namespace, lab link, cgroup or pin."""
    from labkit.cgroup import lab_cgroups
    from labkit.netns import lab_namespaces

    before = (lab_namespaces(), lab_cgroups(), _pins())
    yield
    after = (lab_namespaces(), lab_cgroups(), _pins())
    assert after == before, f"left behind: netns/cgroups/pins {after} (were {before})"


def _pins():
    import os

    return sorted(p for p in os.listdir("/sys/fs/bpf") if p.startswith("lk"))


def pytest_report_header(config):
    import os

    from labkit import preflight

    return ["lab kernel: " + "; ".join(f"{c.name}: {c.detail}" for c in preflight.guest_checks()[:2]),
            f"uname -r: {os.uname().release}"]
