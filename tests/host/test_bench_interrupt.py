"""A Ctrl-C during the benchmark (lesson 09's ``lab.bench()``), on the real lab VM.

Interrupted, the benchmark tears down in the guest (its namespaces, veth,
tc and XDP hooks, cgroup and programs) and puts the kernel settings back,
and the host reports ``Interrupted``; killed outright, it leaves them, and
the next run removes them before it starts. Either way, the run after works.
"""

import json
import os
import signal
import sys
import threading
import time

import pytest

from labkit import paths
from labkit.bench.run import run_in_vm
from labkit.bench.storage import NS_RX, NS_TX
from labkit.runtime.session import Interrupted

STATE = ("ls /run/netns 2>/dev/null | grep '^lk-' ; ls -d /sys/fs/cgroup/lk-* 2>/dev/null; "
         "ls /run/lk-bench.settings.json 2>/dev/null; ip -o link show | grep -o 'lk-b[rt]x' ; "
         "echo stats=$(cat /proc/sys/kernel/bpf_stats_enabled) inline=$(cat /proc/sys/kernel/bpf_skb_storage_inline)")


def state(lab) -> list:
    res = lab.run(["sh", "-c", STATE], cwd=paths.PROJECT, timeout=60)
    return res.out.split()


class Tripwire:
    """A stream for the benchmark's progress: at the first line with ``word``, a Ctrl-C to this
    process ``delay`` seconds later (in the middle of that design's traffic)."""

    def __init__(self, word, delay):
        self.word, self.delay, self.timer, self.seen = word.encode(), delay, None, b""
        self.buffer = self

    def write(self, data):
        self.seen += data
        if self.timer is None and self.word in self.seen:
            self.timer = threading.Timer(self.delay, os.kill, (os.getpid(), signal.SIGINT))
            self.timer.start()
        return len(data)

    def flush(self):
        pass


@pytest.fixture
def lab(vm_ready):
    from labkit.vm.lab import Lab

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Lab() as lab:
            yield lab
    finally:
        signal.signal(signal.SIGINT, old)


def _interrupt_during(lab, monkeypatch, call):
    """Run call() with a Ctrl-C in the middle of the benchmark's second design."""
    trip = Tripwire("repeat 1/", 1.5)
    monkeypatch.setattr(sys, "stderr", trip)
    try:
        return call()
    finally:
        monkeypatch.undo()
        if trip.timer is not None:
            trip.timer.cancel()
        assert trip.timer is not None, f"the benchmark never got to its first design: {trip.seen[-2000:]!r}"


def test_an_interrupted_bench_cleans_up_and_runs_again(lab, monkeypatch):
    before = state(lab)
    assert not any(x.startswith("lk-") for x in before), before
    with pytest.raises(Interrupted) as err:
        _interrupt_during(lab, monkeypatch, lambda: run_in_vm(lab, 3000, 20, stream=True, timeout=600))
    assert "removed its namespaces" in err.value.message and err.value.fix == "run the cell again"
    assert state(lab) == before  # no namespace, link, cgroup or saved settings left; the settings back
    res = run_in_vm(lab, 200, 1, timeout=600)
    assert res["problems"] == [] and set(res["designs"]) >= {"floor", "stash", "mark"}
    assert state(lab) == before


def test_a_killed_bench_leaves_its_things_and_the_next_run_removes_them(lab, monkeypatch):
    before = state(lab)
    argv = ["python", "-m", "labkit.bench.run", "--packets", "3000", "--repeats", "20"]
    with pytest.raises(KeyboardInterrupt):  # no grace: the command is killed, as before the fix
        _interrupt_during(lab, monkeypatch, lambda: lab.run(argv, cwd=paths.PROJECT, timeout=600, stream="stderr"))
    left = state(lab)
    assert f"lk-{NS_TX}" in left and f"lk-{NS_RX}" in left and "/sys/fs/cgroup/lk-bench" in left, left
    assert "stats=1" in left, left  # the kernel setting it changed, not yet put back
    res = run_in_vm(lab, 200, 1, timeout=600)
    assert res["problems"] == []
    assert state(lab) == before


def _cell(kc, code, timeout=900):
    """Run code in the kernel: its execute reply and its outputs (iopub messages)."""
    msg_id = kc.execute(code)
    outs = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] in ("display_data", "error", "stream", "execute_result"):
            outs.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return kc.get_shell_msg(timeout=timeout)["content"], outs


def test_lesson_09_interrupted_in_jupyter_shows_a_note_and_runs_again(vm_ready):
    """The issue as a learner met it: JupyterLab's interrupt during ``lab.bench()``, then the cell
    again. The interrupt is a note (no traceback), the guest is clean, and the re-run works."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(paths.PROJECT))
    try:
        reply, _ = _cell(kc, "from labkit.course.lesson import start\nlab = start('live')")
        assert reply["status"] == "ok", reply
        msg_id = kc.execute("res = lab.bench(packets=3000, repeats=20)")
        while True:  # the cell has started the benchmark in the VM: let it build and time a while
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                break
        time.sleep(25)
        km.interrupt_kernel()
        outs = []
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("display_data", "error"):
                outs.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = kc.get_shell_msg(timeout=60)["content"]
        assert reply["status"] == "error" and reply["ename"] == "Interrupted", reply
        assert [m["msg_type"] for m in outs] == ["display_data"], outs  # the note, no traceback
        note = outs[0]["content"]["metadata"]["labkit_error"]
        assert note["interrupted"] and "removed its namespaces" in note["message"], note
        reply, outs = _cell(kc, "import json\nst = lab.session.state()\n"
                                "print(json.dumps({k: st[k] for k in ('netns', 'links', 'cgroups', 'pins', 'tc')}))")
        assert reply["status"] == "ok", reply
        assert json.loads(outs[-1]["content"]["text"]) == {"netns": [], "links": [], "cgroups": [], "pins": [],
                                                           "tc": []}
        reply, outs = _cell(kc, "res = lab.bench(packets=200, repeats=1)\nprint(res['problems'], sorted(res['designs']))")
        assert reply["status"] == "ok", (reply, outs)
        assert outs[-1]["content"]["text"].startswith("[] ["), outs
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
