"""The lab VM driven from the host, through the CLI and the Lab object.

Each test boots its own VM (a few seconds under TCG) and checks that no
QEMU process outlives it.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from labkit.errors import GuestTimeout
from tests.host.conftest import PROJECT, lab_qemus, labkit


def test_vm_run_contract(vm_ready, tmp_path):
    """Exit code, stdout and stderr come back; cwd is the same path and writable."""
    res = labkit("vm", "run", "--", "sh", "-c",
                 'echo "out:$(pwd)"; echo err >&2; uname -r > written.txt; exit 7', cwd=tmp_path)
    assert res.returncode == 7, res.stderr
    assert f"out:{tmp_path}" in res.stdout
    assert "err" in res.stderr
    assert (tmp_path / "written.txt").read_text().strip() == json.loads(
        (vm_ready / "build.json").read_text())["release"]


def test_vm_has_bpffs_tracefs_and_the_lab_kernel(vm_ready):
    res = labkit("vm", "run", "--", "labkit", "doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "bpf_skb_storage_get in BTF" in res.stdout
    for fs in ("bpf", "tracefs", "cgroup2"):
        assert re.search(rf"^ok +{fs} ", res.stdout, re.M), res.stdout


def test_one_vm_serves_many_commands(vm_ready):
    from labkit.vm.lab import Lab

    with Lab() as lab:
        pid = lab.pid
        outs = [lab.run(["sh", "-c", f"echo {i}"]).out.strip() for i in range(5)]
        assert outs == [str(i) for i in range(5)]
        assert lab.pid == pid
    assert pid not in lab_qemus()


def test_hang_is_killed_at_its_deadline(vm_ready):
    t0 = time.monotonic()
    res = labkit("vm", "run", "--timeout", "5", "--", "sleep", "1000")
    assert time.monotonic() - t0 < 60
    assert res.returncode == 2
    first = res.stderr.splitlines()[0]
    assert "did not finish within 5s" in first and "the VM was stopped" in first, res.stderr
    assert "console:" in res.stderr
    assert not lab_qemus()


def test_lab_timeout_raises_and_cleans_up(vm_ready):
    from labkit.vm.lab import Lab

    with pytest.raises(GuestTimeout):
        with Lab() as lab:
            lab.run(["sleep", "100"], timeout=3)
    assert not lab.alive()


def test_guest_crash_is_detected(vm_ready):
    """A kernel panic in the guest: reported with the console, QEMU gone."""
    res = labkit("vm", "run", "--", "sh", "-c", "echo c > /proc/sysrq-trigger; sleep 30")
    assert res.returncode == 2
    assert "the lab VM stopped while running" in res.stderr.splitlines()[0]
    assert "sysrq" in res.stderr.lower() or "panic" in res.stderr.lower()
    assert not lab_qemus()


def test_interrupt_stops_the_vm(vm_ready):
    # The interrupt comes once the guest command has started (it says so),
    # not after a fixed delay: under load, boot alone can take longer.
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "vm", "run", "--",
                             "sh", "-c", "echo started; exec sleep 100"],
                            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line_within(proc.stdout, 300)
        assert line == "started\n", f"the guest command did not start: {line!r}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not lab_qemus()


def read_line_within(stream, seconds):
    """One line from a pipe, or "" when none comes within the time."""
    got = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return got[0] if got else ""


def test_verifier_reject_through_the_cli(vm_ready):
    res = labkit("vm", "run", "--", "labkit", "bpf", "load", "bpf/build/fail/no_null_check.bpf.o")
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert "the verifier rejected no_null_check" in lines[0]
    assert "map_value_or_null" in lines[0]
    assert any("no_null_check.bpf.c:" in ln and "*v = 42" in ln for ln in lines[1:]), res.stderr
    assert not lab_qemus()


def test_rfc_program_runs_through_bpftool(vm_ready, tmp_path):
    """An RFC-style program, loaded and run by bpftool in the VM, unchanged."""
    from labkit.runtime.packets import udp_frame

    (tmp_path / "pkt.bin").write_bytes(udp_frame(0x1234))
    obj = PROJECT / "bpf/build/rfc_compat.bpf.o"
    script = (
        f"set -e; bpftool prog load {obj} /sys/fs/bpf/lk-rfc type classifier;"
        " trap 'rm -f /sys/fs/bpf/lk-rfc' EXIT;"
        f" bpftool prog run pinned /sys/fs/bpf/lk-rfc data_in {tmp_path}/pkt.bin repeat 1;"
        " bpftool -j map dump name rfc_comp.bss; echo; bpftool -j map dump name rfc_comp.data"
    )
    res = labkit("vm", "run", "--", "sh", "-c", script, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Return value: 0" in res.stdout
    dumps = [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("[")]
    found = {}
    for dump in dumps:
        for entry in dump:
            for section in entry["formatted"]["value"].values():
                for var in section:
                    found.update(var)
    assert found == {"created": 1, "readback": 0x5EED5EED, "deleted": 0, "again": -2}, found


def test_persistent_vm_is_reused_and_stopped(vm_ready):
    try:
        assert labkit("vm", "start").returncode == 0
        first = labkit("vm", "run", "--", "cat", "/proc/sys/kernel/random/boot_id")
        second = labkit("vm", "run", "--", "cat", "/proc/sys/kernel/random/boot_id")
        assert first.returncode == 0 and first.stdout == second.stdout, "vm run did not reuse the VM"
        assert len(lab_qemus()) == 1
    finally:
        labkit("vm", "stop")
    assert not lab_qemus()


def test_a_killed_owner_leaves_no_vm_and_no_run_folder(vm_ready):
    """SIGKILL to the process that owns a lab VM (what the OOM killer or a
    hard kernel restart does: no Python cleanup runs): QEMU dies with it and
    the guard removes the run folder."""
    from labkit import paths

    code = ("from labkit.vm.lab import Lab\nlab = Lab()\nlab.start()\n"
            "print(lab.pid, lab.rundir, flush=True)\nimport time\ntime.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=PROJECT, stdout=subprocess.PIPE, text=True)
    try:
        pid, rundir = proc.stdout.readline().split()
        assert int(pid) in lab_qemus() and os.path.isdir(rundir)
        assert os.path.dirname(rundir) == str(paths.run_dir())
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while (lab_qemus() or os.path.exists(rundir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lab_qemus(), "QEMU outlived its owner"
    assert not os.path.exists(rundir), "the run folder outlived its owner"
