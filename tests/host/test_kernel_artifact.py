"""labkit kernel export/import with the real lab kernel: the exported file
installs into an empty cache through the CLI, `labkit kernel path` points
at it, `labkit kernel build` builds nothing, and the lab VM boots from it.
A user who is not root and never built gets it from a shared location."""

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from labkit import paths
from tests.conftest import need
from tests.host.conftest import labkit


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The real lab kernel exported with the CLI: (file, manifest, kernel dir)."""
    from labkit import kernel
    from labkit.errors import LabError

    try:
        kdir = kernel.kernel_path()
    except LabError as exc:
        need(False, exc.message, "run: ./lab setup")
    path = tmp_path_factory.mktemp("artifact") / "lab-kernel.tar.gz"
    res = labkit("kernel", "export", "-o", str(path))
    assert res.returncode == 0, res.stderr
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["manifest.json", "vmlinux", "vmlinux.h", "config"]
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["release"] == kernel.info(kdir)["release"]
    assert manifest["series"] == kernel.series_id() and manifest["config_id"] == kernel.config_id()
    for name in ("vmlinux", "vmlinux.h", "config"):
        assert manifest["members"][name]["sha256"] == sha256(kdir / name), name
    return path, manifest, kdir


def test_imported_kernel_is_found_builds_nothing_and_boots(artifact, tmp_path, monkeypatch):
    from labkit import tools
    from labkit.vm.lab import Lab

    path, manifest, kdir = artifact
    cache = tmp_path / "cache"
    env = {"LABKIT_CACHE": str(cache), "LABKIT_SHARED_KERNELS": "", "LABKIT_KERNEL_DIR": ""}
    res = labkit("kernel", "import", str(path), env=env)
    assert res.returncode == 0, res.stderr
    imported = Path(res.stdout.strip())
    assert imported.parent.parent == cache / "kernel" and imported != kdir
    for name in ("vmlinux", "vmlinux.h", "config"):
        assert sha256(imported / name) == sha256(kdir / name), name

    res = labkit("kernel", "path", env=env)
    assert res.returncode == 0 and Path(res.stdout.strip()) == imported, res.stderr
    res = labkit("kernel", "build", env=env)
    assert res.returncode == 0 and Path(res.stdout.strip().splitlines()[-1]) == imported, res.stderr
    assert "[build]" not in res.stderr and not (cache / "kernel" / "work").exists(), "labkit kernel build built"

    need(tools.which("qemu-system-x86_64") is not None, "QEMU is not installed", "run: ./lab setup")
    monkeypatch.setenv("LABKIT_CACHE", str(cache))  # the VM's own state too
    with Lab(kernel_dir=imported) as lab:
        pid, rundir = lab.pid, Path(lab.rundir)
        r = lab.run(["uname", "-r"], timeout=120)
    assert r.code == 0 and r.out.strip() == manifest["release"], r.err
    assert not os.path.exists(f"/proc/{pid}"), "the VM's QEMU outlived it"
    assert not rundir.exists(), "the VM left its run folder"


def test_a_user_who_never_built_gets_the_shared_kernel(artifact):
    """As nobody, with a fresh home: kernel path and kernel build find the shared
    copy (dirs 0755, files 0644) and write nothing; importing there is refused."""
    setpriv = shutil.which("setpriv")
    need(os.geteuid() == 0 and setpriv is not None, "running as another user needs root and setpriv",
         "run the tests as root (sudo ./lab test)")
    path, manifest, _ = artifact
    nobody = pwd.getpwnam("nobody")
    # The venv's interpreter may sit under a private folder (/root/.pyenv); these
    # commands need only the standard library, so nobody runs Debian's python3.
    python = "/usr/bin/python3"
    need(os.access(python, os.X_OK), "Debian's python3 is missing", "run: apt-get install python3")
    top = Path(tempfile.mkdtemp(prefix="labkit-shared-test-"))
    try:
        os.chmod(top, 0o755)
        shared = top / "kernel"
        old = os.umask(0o077)  # an instructor's strict umask must not hide it
        try:
            res = labkit("kernel", "import", str(path), "--to", str(shared))
        finally:
            os.umask(old)
        assert res.returncode == 0, res.stderr
        out = Path(res.stdout.strip())
        assert out.parent.parent == shared
        for p in [shared, *shared.rglob("*")]:
            want = 0o755 if p.is_dir() else 0o644
            assert stat.S_IMODE(p.stat().st_mode) == want, p

        home = top / "home"
        home.mkdir()
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        shutil.copy(path, top / "lab-kernel.tar.gz")
        os.chmod(top / "lab-kernel.tar.gz", 0o644)
        # nobody may not be able to read the checkout (under /root, a 0700 home): a copy of
        # labkit and the kernel recipe it keys the kernel by
        src = top / "src"
        for part in ("labkit", "kernel"):
            shutil.copytree(paths.PROJECT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
        for p in [src, *src.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(src),
               "PYTHONDONTWRITEBYTECODE": "1", "LABKIT_SHARED_KERNELS": str(shared)}

        def as_nobody(*args):
            argv = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                    python, "-m", "labkit.cli", *args]
            return subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=120)

        res = as_nobody("kernel", "path")
        assert res.returncode == 0 and Path(res.stdout.strip()) == out, res.stderr
        res = as_nobody("kernel", "build")
        assert res.returncode == 0 and Path(res.stdout.strip().splitlines()[-1]) == out, res.stderr
        assert "prebuilt" in res.stderr and "[build]" not in res.stderr, res.stderr
        assert not (home / ".cache" / "labkit" / "kernel").exists(), "nobody's kernel build wrote a cache"

        before = sorted(p.relative_to(shared) for p in shared.rglob("*"))
        res = as_nobody("kernel", "import", str(top / "lab-kernel.tar.gz"), "--to", str(shared))
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("labkit: ")]
        assert res.returncode == 2 and len(errors) == 1 and "permission denied" in errors[0], res.stderr
        assert sorted(p.relative_to(shared) for p in shared.rglob("*")) == before
    finally:
        shutil.rmtree(top)
