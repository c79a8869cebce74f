"""What the lab VM can write of the host: its working folder, and nothing else.

Every command in the guest runs as root there; the host is protected by
what QEMU exports (the host's root read-only, the working folder
writable) and by the user QEMU runs as. These tests try to write outside
the working folder from the guest, the way a lesson cell or a `%%bpf`
loader could, and check the host is untouched.
"""

import os
import shutil
import uuid

import pytest

from labkit import paths
from labkit.errors import VMError
from tests.host.conftest import labkit


@pytest.fixture
def outside():
    """A host folder outside the VM's working folder and outside /tmp (the
    guest has a /tmp of its own): the guest sees it through the read-only root."""
    d = paths.cache_dir() / f"seal-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    (d / "keep.txt").write_text("host data\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_guest_writes_its_working_folder_and_nothing_else(vm_ready, tmp_path, outside):
    from labkit.vm.lab import Lab

    work = tmp_path / "work"
    work.mkdir()
    marker = f"/tmp/labkit-seal-{uuid.uuid4().hex[:8]}"
    with Lab(workdir=work) as lab:
        ok = lab.run(["sh", "-c", "echo from-guest > made-in-guest.txt"], cwd=work)
        assert ok.code == 0, ok.err
        attempts = {
            "a host folder seen through the root": f"echo x > {outside}/new.txt",
            "overwriting a host file": f"echo x > {outside}/keep.txt",
            "removing a host file": f"rm -f {outside}/keep.txt",
            "the host's root mounted a second time": f"echo x > /run/labkit/host{marker}",
            "the checkout, when it is not the working folder": f"touch {paths.PROJECT}/seal-test",
            "remounting the root read-write": "mount -o remount,rw / && touch /etc/labkit-seal-test",
        }
        for what, cmd in attempts.items():
            res = lab.run(["sh", "-c", cmd], cwd=work)
            assert res.code != 0, f"{what}: `{cmd}` succeeded in the guest"
            assert "Read-only file system" in res.err or "Permission denied" in res.err, f"{what}: {res.err}"
    assert (work / "made-in-guest.txt").read_text() == "from-guest\n"
    assert (work / "made-in-guest.txt").stat().st_uid == os.getuid()
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "host data\n"
    assert not os.path.exists(marker) and not (paths.PROJECT / "seal-test").exists()
    assert not os.path.exists("/etc/labkit-seal-test")


def test_vm_run_in_a_folder_writes_only_there(vm_ready, tmp_path, outside):
    """The README's `labkit vm run`: the folder it runs in is the writable one."""
    res = labkit("vm", "run", "--", "sh", "-c", f"echo ok > here.txt; echo x > {outside}/new.txt", cwd=tmp_path)
    assert res.returncode != 0
    assert (tmp_path / "here.txt").read_text() == "ok\n"
    assert not (outside / "new.txt").exists()
    assert "Read-only file system" in res.stderr


def test_run_from_a_system_folder_writes_nothing_there(vm_ready):
    """From / (or the shared /tmp) the guest gets a scratch folder of its own
    to write; the folder it was started in stays read-only."""
    res = labkit("vm", "run", "--", "sh", "-c", "pwd; touch seal-test-from-root", cwd="/")
    assert res.returncode != 0 and res.stdout.strip() == "/"
    assert "Read-only file system" in res.stderr
    assert not os.path.exists("/seal-test-from-root")


def test_a_lab_object_refuses_the_root(vm_ready):
    from labkit.vm.lab import Lab

    with pytest.raises(VMError, match="only a working folder"):
        Lab(workdir="/").start()
    assert not list(paths.run_dir().glob("run-*"))
