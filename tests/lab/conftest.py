"""The lab tier: runs as root inside the lab VM, on the lab kernel.

Run it with ``labkit vm run -- python -m pytest tests/lab`` (``./lab test``
does). Started anywhere else every test skips with that command, and under
CI=true fails instead.
"""

import os
import secrets

import pytest

from labkit.vm import preflight
from tests.conftest import need

# The planted-fault test needs the debug kernel's lkdtm: collected there alone.
collect_ignore = [] if os.uname().release.endswith("-labkit-debug") else ["test_zz_splat_scan.py"]


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
    from labkit.guest.cgroup import lab_cgroups
    from labkit.guest.netns import lab_namespaces

    before = (lab_namespaces(), lab_cgroups(), _pins())
    yield
    after = (lab_namespaces(), lab_cgroups(), _pins())
    assert after == before, f"left behind: netns/cgroups/pins {after} (were {before})"


@pytest.fixture(scope="session")
def _kmsg():
    """The guest's kernel log from the start of the tier on."""
    from labkit.kernel import splats

    if not preflight.lab_kernel_here():
        yield None
        return
    log = splats.Kmsg()
    splats.kmemleak_clear()  # what boot left is not a test's
    yield log
    log.close()


@pytest.fixture
def kmsg(_kmsg):
    """For a test that provokes a splat on purpose: ``kmsg.splats()`` returns
    (and takes) what the kernel printed since the test began."""
    return _kmsg


@pytest.fixture(autouse=True)
def _no_splat(_kmsg, request):
    """A test that leaves a kernel splat (KASAN, lockdep, RCU, WARN, BUG,
    oops) in the guest's log fails, whatever it asserted."""
    if _kmsg is not None:
        _kmsg.read()  # what came before belongs to no test
    yield
    if _kmsg is None:
        return
    found = _kmsg.splats()
    if found:
        pytest.fail(f"{request.node.nodeid} left {len(found)} kernel splat(s) in the guest's log:\n\n"
                    + "\n\n".join(found), pytrace=False)


@pytest.fixture(scope="module", autouse=True)
def _leak_report(_kmsg, request):
    """On the debug kernel, kmemleak scans after each test module (objects
    must be 5 s old to count, so the scan waits that long); a suspected
    leak fails the module's last test, and the report is written to
    artifacts/kmemleak-<module>.txt. (kmemleak can suspect an object that
    is referenced only from memory it does not scan: the report's
    backtrace and hex dump say which.)"""
    import os

    from labkit import paths
    from labkit.kernel import splats

    yield
    if _kmsg is None or not splats.kmemleak_available():
        return
    report = splats.kmemleak_report(settle=6)
    splats.kmemleak_clear()
    if report:
        out = paths.PROJECT / "artifacts" / f"kmemleak-{os.path.basename(request.node.name)}.txt"
        try:
            out.parent.mkdir(exist_ok=True)
            out.write_text(report + "\n")
        except OSError:
            pass
        pytest.fail(f"kmemleak reports a leak after {request.node.nodeid} (see {out}):\n{report[:3000]}",
                    pytrace=False)


def _pins():
    import os

    return sorted(p for p in os.listdir("/sys/fs/bpf") if p.startswith("lk"))


def pytest_report_header(config):
    import os

    from labkit.vm import preflight

    return ["lab kernel: " + "; ".join(f"{c.name}: {c.detail}" for c in preflight.guest_checks()[:2]),
            f"uname -r: {os.uname().release}"]
