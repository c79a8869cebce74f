"""The host tier: the lab as a user drives it from outside the VM."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import paths
from tests.conftest import need
from tests.shared import shared

PROJECT = paths.PROJECT


def labkit(*args, env=None, timeout=300, cwd=None):
    """Run the labkit CLI as a user would; return the CompletedProcess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or PROJECT)


def lab_qemus():
    from labkit.vm.cleanup import lab_qemu_pids

    return lab_qemu_pids()


def vm_prerequisites() -> Path:
    """The lab kernel's directory; skip (fail in CI) unless QEMU, the kernel and the BPF objects are there."""
    from labkit import kernel, tools
    from labkit.errors import LabError

    try:
        tools.require("qemu-system-x86_64")
        kdir = kernel.kernel_path()
    except LabError as exc:
        need(False, exc.message, exc.fix or "run: ./lab setup")
    need((paths.bpf_build_dir() / "storage_basic.bpf.o").exists(), "BPF objects are not built",
         "run: labkit bpf build")
    return Path(kdir)


_WARM = []


def warm_snapshot(kdir):
    """Make (or find) the default lab VM's warm snapshot (returned) once per run, before the
    first VM test: a test that reads the first line a command prints must not
    get the snapshot's progress instead."""
    if _WARM:
        return _WARM[0]
    from labkit.progress import Progress
    from labkit.vm.lab import default_snapshot

    found, why = default_snapshot(kdir, progress=Progress(quiet=True))
    assert found is not None or os.environ.get("CI") != "true", f"no warm snapshot: {why}"
    _WARM.append(found)
    return found


@pytest.fixture
def vm_ready():
    """Skip (fail in CI) unless QEMU, the lab kernel and the BPF objects are there."""
    kdir = vm_prerequisites()
    warm_snapshot(kdir)
    before = set(lab_qemus())
    yield kdir
    left = set(lab_qemus()) - before
    assert not left, f"QEMU processes left behind: {left}"


@pytest.fixture(scope="session")
def hub_install():
    """One workshop install (``labkit hub setup`` into a fresh prefix) for the
    whole run, shared by its workers (tests/shared.py): the hub tests and the
    workshop test start their hubs from it."""
    import shutil

    need(os.geteuid() == 0, "the hub creates unix users and cgroups: root only", "run the tests as root")
    need(bool(shutil.which("npm") and shutil.which("node")), "nodejs and npm are not installed",
         "apt-get install nodejs npm (./lab hub does it)")
    need(bool(shutil.which("qemu-system-x86_64")), "QEMU is not installed", "run: ./lab setup")
    from labkit.hub import cgroups

    need(cgroups.detect() is not None, "no cgroup with memory and cpu controllers here", "boot with cgroup v2")
    path = labkit("kernel", "path")
    need(path.returncode == 0, "no lab kernel to install", "run: labkit kernel build")
    return Path(shared("hub-install", make_install, "tests.host.conftest:remove_install")["prefix"])


def make_install() -> dict:
    import shutil
    import tempfile

    from tests.host import hubtools

    # Not under /tmp or /var/tmp: a student's server has its own over the host's (labkit.hub.disk).
    prefix = Path(tempfile.mkdtemp(prefix="skb-lab-hubtest-", dir="/opt"))
    os.chmod(prefix, 0o755)
    try:
        res = hubtools.setup(prefix)
        assert res.returncode == 0, f"labkit hub setup failed:\n{res.stdout}\n{res.stderr}"
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    return {"prefix": str(prefix)}


def remove_install(value):
    import shutil

    shutil.rmtree(value["prefix"], ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def bystander(request):
    """Another user's lab VM, running beside the whole host tier when the
    tests run as root (as on a workshop server, where every student has one):
    no test, cleanup or check may see or touch it. One for the run, shared by
    its workers; the last test of the tier (test_zz_bystander.py) checks it is
    still up; the run's end stops it and removes the user. Only under CI=true
    or LABKIT_BYSTANDER=1 (it costs a hub install and a VM), and only as root
    (it makes a unix user)."""
    wanted = os.environ.get("CI") == "true" or os.environ.get("LABKIT_BYSTANDER") == "1"
    if os.geteuid() != 0 or not wanted:
        return None
    prefix = request.getfixturevalue("hub_install")
    return shared("bystander", lambda: make_bystander(prefix), "tests.host.conftest:remove_bystander")


def _bystander_env(prefix, home) -> dict:
    import json

    info = json.loads((Path(prefix) / "setup.json").read_text())
    return {"HOME": str(home), "PATH": f"{prefix}/venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
            "LABKIT_KERNEL_DIR": info["kernel_dir"], "LABKIT_ACCEL": "tcg"}


def _as(uid, gid) -> list:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups"]


def make_bystander(prefix) -> dict:
    import pwd
    import secrets
    import subprocess

    from tests.host.hubtools import qemus_of

    name = f"lkby-{secrets.token_hex(3)}"
    home = Path("/var/tmp") / name
    subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
                    "--comment", "skb-lab test bystander", name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    value = {"user": name, "uid": pw.pw_uid, "gid": pw.pw_gid, "home": str(home), "prefix": str(prefix)}
    try:
        res = subprocess.run([*_as(pw.pw_uid, pw.pw_gid), f"{prefix}/venv/bin/labkit", "vm", "start"],
                             capture_output=True, text=True, env=_bystander_env(prefix, home), cwd=home, timeout=180)
        assert res.returncode == 0, f"the bystander's lab VM did not start: {res.stdout}{res.stderr}"
        pids = qemus_of(pw.pw_uid)
        assert len(pids) == 1, f"the bystander should have one lab VM: {pids}"
    except BaseException:
        remove_bystander(value)
        raise
    return {**value, "pid": pids[0]}


def remove_bystander(value):
    import shutil
    import subprocess

    prefix, home = value["prefix"], value["home"]
    subprocess.run([*_as(value["uid"], value["gid"]), f"{prefix}/venv/bin/labkit", "vm", "stop"], capture_output=True,
                   env=_bystander_env(prefix, home), cwd=home, timeout=60)
    subprocess.run(["pkill", "-KILL", "-u", value["user"]], capture_output=True)
    subprocess.run(["userdel", "-r", "-f", value["user"]], capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
