"""`labkit cleanup` inside the VM removes the lab's leftovers and nothing else."""

import os
import subprocess
import sys

from labkit.guest.netns import sh


def test_cleanup_sweeps_only_lab_objects():
    sh("ip", "netns", "add", "lk-sweep")
    sh("ip", "link", "add", "lk-sweep0", "type", "dummy")
    os.mkdir("/sys/fs/cgroup/lk-sweep")
    sh("bpftool", "map", "create", "/sys/fs/bpf/lk-sweep", "type", "array", "key", "4", "value", "4",
       "entries", "1", "name", "lksweep")
    sh("ip", "netns", "add", "keep-ns")
    sh("ip", "link", "add", "keep0", "type", "dummy")
    try:
        res = subprocess.run([sys.executable, "-m", "labkit.cli", "cleanup"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        for what in ("netns lk-sweep", "link lk-sweep0", "cgroup lk-sweep", "pin /sys/fs/bpf/lk-sweep"):
            assert what in res.stdout, res.stdout
        assert "lk-sweep" not in os.listdir("/run/netns")
        assert not os.path.exists("/sys/class/net/lk-sweep0")
        assert not os.path.exists("/sys/fs/cgroup/lk-sweep")
        assert not os.path.exists("/sys/fs/bpf/lk-sweep")
        assert "keep-ns" in os.listdir("/run/netns"), "cleanup removed a namespace it did not make"
        assert os.path.exists("/sys/class/net/keep0"), "cleanup removed a link it did not make"
    finally:
        sh("ip", "netns", "del", "keep-ns", check=False)
        sh("ip", "link", "del", "keep0", check=False)


def test_a_cgroup_with_processes_left_in_it_is_removed():
    # What an interrupted run can leave: this process still inside member()'s
    # cgroup and a helper child (pyroute2 forks one per namespace socket) in it.
    from labkit.guest.cgroup import Cgroup

    cg = Cgroup().__enter__()
    child = None
    try:
        with open(os.path.join(cg.path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
        child = subprocess.Popen(["sleep", "60"])
        with open(os.path.join(cg.path, "cgroup.procs")) as fh:
            assert {str(os.getpid()), str(child.pid)} <= set(fh.read().split())
        try:
            os.rmdir(cg.path)
            raise AssertionError("the kernel removed a populated cgroup; this test no longer tests anything")
        except OSError as exc:
            assert exc.errno == 16  # EBUSY: what a plain rmdir met in an interrupted run
        cg.close()
        assert not os.path.exists(cg.path)
        assert child.wait(timeout=5) == -9, "the helper left in the cgroup was not killed"
        with open("/proc/self/cgroup") as fh:
            assert fh.read().strip() == "0::/", "this process was not moved back to the root cgroup"
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        with open("/sys/fs/cgroup/cgroup.procs", "w") as fh:
            fh.write(str(os.getpid()))
        if os.path.exists(cg.path):
            os.rmdir(cg.path)
