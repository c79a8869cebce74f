"""Warm snapshots of the lab VM (labkit.vm.snapshot): a restored VM is the lab
VM a boot gives, with its own time and randomness; a stale snapshot is never
restored; a killed build leaves nothing; two users restore one shared,
read-only snapshot at once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.vm import snapshot
from tests.host.conftest import PROJECT, lab_qemus, need, warm_snapshot


def _urandom_and_clock(lab):
    res = lab.run([sys.executable, "-c", "import os, time; print(os.urandom(16).hex(), time.time())"], timeout=120)
    assert res.code == 0, res.err
    hexed, now = res.out.split()
    return hexed, float(now)


def test_a_restored_vm_is_the_lab_vm_with_its_own_time_and_randomness(vm_ready, tmp_path):
    from labkit.vm.lab import Lab

    seen = []
    for _ in range(2):
        with Lab(workdir=tmp_path) as lab:
            assert lab.warm is not None, f"the lab VM booted cold: {lab.warm_why}"
            assert lab.release == json.loads((vm_ready / "build.json").read_text())["release"]
            rand, guest_now = _urandom_and_clock(lab)
            assert abs(guest_now - time.time()) < 30, "the restored guest's clock was not set"
            res = lab.run(["sh", "-c", "uname -r; cat /proc/mounts; echo hi > written.txt"], cwd=tmp_path)
            assert res.code == 0, res.err
            assert res.out.splitlines()[0] == lab.release
            assert f"{tmp_path} 9p rw" in res.out, res.out  # the working folder, writable
            assert "hostro /usr 9p ro" in res.out, res.out  # the host's root, read-only
            seen.append(rand)
        assert (tmp_path / "written.txt").read_text() == "hi\n"
    assert seen[0] != seen[1], "two restores of one snapshot gave the same random bytes"
    assert not lab_qemus()


def test_a_scenario_worker_starts_warm(vm_ready):
    from labkit import scenarios
    from labkit.runtime.session import Session

    with Session() as s:
        assert s.lab.warm is not None, s.lab.warm_why
        assert s.ready["start_s"] < 3, f"the worker took {s.ready['start_s']}s: it was not forked warm"
        log = s.run(scenarios.get("clone", kind="mirred"))
        assert log.events


def test_icount_boots_cold_and_says_why(vm_ready):
    from labkit.vm.lab import Lab
    from labkit.vm.restore import ICOUNT_COLD

    with Lab(clock="icount") as lab:
        assert lab.warm is None and lab.warm_why == ICOUNT_COLD
        assert lab.run(["true"]).code == 0


@pytest.fixture
def own_snapshots(tmp_path, monkeypatch):
    d = tmp_path / "snapshots"
    monkeypatch.setenv("LABKIT_SNAPSHOTS", str(d))
    return d


def test_a_stale_snapshot_is_never_restored(vm_ready, own_snapshots, tmp_path):
    """A file the guest loaded before the save changes: the snapshot is not restored, a new one is made."""
    from labkit.vm.lab import Lab

    # Not made again: the run's own snapshot, copied in (its state linked: no write reaches it).
    made = warm_snapshot(vm_ready)
    need(made is not None, "no warm snapshot could be made here", "run: labkit doctor")
    shutil.copytree(made.dir, own_snapshots / made.dir.name,
                    copy_function=lambda src, dst: (os.link if src.endswith("/state") else shutil.copy2)(src, dst))
    with Lab(workdir=tmp_path) as lab:
        first = lab.warm
    assert first is not None and first.dir.parent == own_snapshots
    # Stand a file of ours in for one the guest loaded, then change it.
    loaded = tmp_path / "loaded.py"
    loaded.write_text("x = 1\n")
    manifest = json.loads((first.dir / "manifest.json").read_text())
    manifest["files"].append(str(loaded))
    manifest["fingerprint"] = snapshot.fingerprint(manifest["files"])
    (first.dir / "manifest.json").write_text(json.dumps(manifest))
    assert snapshot.load(first.dir.name)[0] is not None
    state_inode = first.state.stat().st_ino
    time.sleep(0.01)
    loaded.write_text("x = 2\n")
    found, why = snapshot.load(first.dir.name)
    assert found is None and "stale" in why
    with Lab(workdir=tmp_path) as lab:
        assert lab.warm is not None and lab.warm.dir == first.dir
        assert lab.warm.state.stat().st_ino != state_inode, "the stale snapshot was restored"
        assert str(loaded) not in lab.warm.manifest["files"]


def test_an_interrupted_build_leaves_nothing(vm_ready, own_snapshots):
    code = ("from labkit import kernel\nfrom labkit.vm import warmbuild\nk = kernel.kernel_path()\n"
            "warmbuild.build(k, k / 'vmlinux', accel='tcg', cpus=1, memory='768M')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "LABKIT_ACCEL": "tcg"})
    out = ""
    try:
        for line in proc.stdout:
            out += line
            if "loading the warm Python" in line:
                break
        assert "loading the warm Python" in out, out
        time.sleep(1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (lab_qemus() or [p for p in own_snapshots.iterdir() if ".tmp-" in p.name]):
        time.sleep(0.2)
    assert not lab_qemus(), "the killed build's QEMU is still running"
    left = sorted(p.name for p in own_snapshots.iterdir())
    assert all(name.endswith(".lock") for name in left), f"a killed build left {left}"


def test_two_users_restore_one_shared_snapshot_and_cannot_write_it(vm_ready, hub_install, tmp_path):
    """As on a workshop server: root makes the snapshot in a shared folder, two
    students restore it at once; neither can write it."""
    import pwd

    need(os.geteuid() == 0 and shutil.which("setpriv"), "other users need root and setpriv",
         "run the tests as root (sudo ./lab test)")
    prefix = hub_install
    info = json.loads((prefix / "setup.json").read_text())
    top = Path(tempfile_dir())
    shared = top / "snapshots"
    env = {"PATH": f"{prefix}/venv/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LABKIT_KERNEL_DIR": info["kernel_dir"],
           "LABKIT_ACCEL": "tcg", "LABKIT_SNAPSHOTS": str(shared), "HOME": str(top)}
    res = subprocess.run([f"{prefix}/venv/bin/labkit", "vm", "snapshot"], env=env, capture_output=True, text=True,
                         timeout=600, cwd=top)
    assert res.returncode == 0, res.stdout + res.stderr
    users = []
    try:
        for i in range(2):
            name = f"lksn-{os.getpid() % 10000}-{i}"
            home = top / name
            subprocess.run(["useradd", "--system", "--create-home", "--home-dir", str(home), "--shell",
                            "/usr/sbin/nologin", name], check=True, capture_output=True)
            users.append(name)
        probe = ("import os, sys\nfrom labkit.vm.lab import Lab\nfrom labkit.vm import snapshot\n"
                 "with Lab() as lab:\n"
                 "    assert lab.warm is not None, lab.warm_why\n"
                 "    assert lab.run(['true']).code == 0\n"
                 "    state = lab.warm.state\n"
                 "try:\n    open(state, 'r+b')\n    print('WROTE')\nexcept PermissionError:\n    print('refused')\n"
                 "try:\n    (state.parent / 'mine').write_text('x')\n    print('WROTE')\n"
                 "except PermissionError:\n    print('refused')\n")
        procs = []
        for name in users:
            pw = pwd.getpwnam(name)
            procs.append(subprocess.Popen(
                ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                 f"{prefix}/venv/bin/python", "-c", probe], cwd=pw.pw_dir, text=True,
                env={**env, "HOME": pw.pw_dir}, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, out + err
            assert out.split() == ["refused", "refused"], out + err
            assert "booting the lab VM cold" not in err, err
    finally:
        for name in users:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def tempfile_dir():
    """A folder other users can enter (pytest's tmp_path is under a 0700 folder)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="labkit-snapshot-test-", dir="/var/tmp")
    os.chmod(d, 0o755)
    return d


def test_a_spare_vm_is_taken_over_by_the_first_lab_that_fits(vm_ready, tmp_path):
    """As a hub does when a student's server starts: a VM restored ahead, taken by
    the first Lab() with the same working folder, left alone by any other."""
    from labkit import paths
    from labkit.vm.lab import Lab

    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    res = subprocess.run([sys.executable, "-m", "labkit.vm.spare", str(work)], cwd=PROJECT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and "spare lab VM up" in res.stdout, res.stdout + res.stderr
    spare_pid = json.loads((paths.run_dir() / "spare" / "state.json").read_text())["pid"]
    try:
        with Lab(workdir=other) as lab:
            assert not lab.spare and lab.pid != spare_pid
        assert (paths.run_dir() / "spare").is_dir(), "a Lab that does not fit took the spare"
        with Lab(workdir=work) as lab:
            assert lab.spare and lab.pid == spare_pid
            assert lab.run(["sh", "-c", "echo taken > t.txt"], cwd=work).code == 0
        assert (work / "t.txt").read_text() == "taken\n"
        assert not (paths.run_dir() / "spare").exists()
        assert not os.path.exists(f"/proc/{spare_pid}"), "the spare's QEMU outlived the Lab that took it"
    finally:
        if os.path.exists(f"/proc/{spare_pid}"):
            os.kill(spare_pid, signal.SIGKILL)
        shutil.rmtree(paths.run_dir() / "spare", ignore_errors=True)


def test_a_lesson_that_asks_while_the_spare_restores_gets_its_slot(vm_ready, tmp_path, monkeypatch):
    """A student's first cell can run before their server's spare VM is up: the lesson asks while
    the keeper holds the student's one running slot and still restores the VM. It waits for the
    keeper, gets the slot, and the VM (not a replay for want of a slot)."""
    from labkit import paths
    from labkit.course.lesson import running_slot
    from labkit.vm.lab import Lab
    from labkit.vm.slotbroker import Broker

    sockdir = tmp_path / "broker"
    sockdir.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    with Broker(sockdir / "slots.sock", 1, 1) as broker:
        monkeypatch.setenv("LABKIT_VM_SLOTS", str(sockdir / "slots.sock"))
        proc = subprocess.Popen([sys.executable, "-m", "labkit.vm.spare", str(work)], cwd=PROJECT, env=dict(os.environ),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        spare_pid = None
        try:
            deadline = time.monotonic() + 120
            while broker.run[0] is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert broker.run[0] is not None, "the keeper took no running slot"
            slot = running_slot()  # the keeper's: this user has no other
            try:
                assert slot.held and slot.capped
                out, _ = proc.communicate(timeout=300)
                assert proc.returncode == 0 and "spare lab VM up" in out, out
                spare_pid = json.loads((paths.run_dir() / "spare" / "state.json").read_text())["pid"]
                with Lab(workdir=work) as lab:
                    assert lab.spare and lab.pid == spare_pid
            finally:
                slot.release()
        finally:
            proc.kill()
            if spare_pid and os.path.exists(f"/proc/{spare_pid}"):
                os.kill(spare_pid, signal.SIGKILL)
            shutil.rmtree(paths.run_dir() / "spare", ignore_errors=True)
