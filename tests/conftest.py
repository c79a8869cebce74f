"""Shared test helpers: how a test that needs something missing skips (or fails in CI)."""

import os

import pytest


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
