"""Shared test helpers: how a test that needs something missing skips (or fails in CI)."""

import os

import pytest

from tests import checkout, shared

_SHARED = []


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller, or a run without workers
        _SHARED.append(shared.start_run())
        checkout.save_before()


# Under pytest-xdist (--dist loadgroup), a module's tests run in one worker, in order, with its
# module fixtures made once; these run each on its own, on whichever worker is free.
SPREAD = ("tests/unit/", "tests/notebooks/test_notebooks.py")
# Modules that start hubs: one worker, one after another (every hub sets the one parent cgroup's limits).
HUBS = ("tests/host/test_hub.py", "tests/host/test_hub_attacks.py", "tests/host/test_workshop.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::")[0]
        if not module.startswith(SPREAD):
            item.add_marker(pytest.mark.xdist_group("hubs" if module in HUBS else module))


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput") and _SHARED:
        shared.end_run(_SHARED.pop())


def need(condition: bool, reason: str, fix: str):
    """Skip with the reason and the command that fixes it; under CI=true, fail."""
    if condition:
        return
    msg = f"{reason} -- {fix}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run this test, but {msg}", pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session", autouse=True)
def own_run_dir():
    """This test run's lab VMs keep their run folders in a folder of its own
    (``LABKIT_RUN_DIR``, inherited by every labkit process a test starts), so
    the checks for VMs or run folders left behind see only this run's, never
    those of another user or another run on the same machine."""
    if os.environ.get("LABKIT_GUEST") == "1":
        yield None
        return
    import tempfile

    old = os.environ.get("LABKIT_RUN_DIR")
    path = tempfile.mkdtemp(prefix="lkrun-")  # short: QEMU's control socket path must fit sun_path
    os.environ["LABKIT_RUN_DIR"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("LABKIT_RUN_DIR", None)
        else:
            os.environ["LABKIT_RUN_DIR"] = old
        import shutil

        shutil.rmtree(path, ignore_errors=True)
