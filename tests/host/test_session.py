"""Scenario runs from the host through one warm worker, and their faults.

Every fault must give a one-line error and leave nothing behind: no lab
namespace, link, cgroup or pin in the guest (asked of the worker itself)
and no QEMU process on the host.
"""

import dataclasses
import os
import signal
import threading
import time

import pytest

from labkit import paths, scenarios
from labkit.errors import GuestTimeout, VerifierError, VMError
from labkit.runtime.parts import Attach, Hook, Packet, ScenarioError
from labkit.runtime.session import Interrupted, ScenarioFailed, Session, run_message
from tests.conftest import need
from tests.host.conftest import lab_qemus, labkit

CLEAN = {"netns": [], "links": [], "cgroups": [], "pins": [], "tc": []}  # tc: clsact qdiscs in the root netns


def _ready():
    from labkit import kernel, tools
    from labkit.errors import LabError

    try:
        tools.require("qemu-system-x86_64")
        kernel.kernel_path()
    except LabError as exc:
        need(False, exc.message, exc.fix or "run: ./lab setup")
    need((paths.bpf_build_dir() / "observe.bpf.o").exists(), "BPF objects are not built", "run: labkit bpf build")


@pytest.fixture(scope="module")
def session():
    _ready()
    before = set(lab_qemus())
    with Session() as s:
        yield s
    assert not set(lab_qemus()) - before, "QEMU left behind"


def left_in_guest(s):
    st = s.state()
    return {k: st[k] for k in CLEAN}


def one_line(exc):
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def test_one_worker_serves_many_runs(session):
    pid = session.ready["pid"]
    fds = []
    for name, params in [("basic", {}), ("tunnel", {"kind": "vxlan"}), ("clone", {"kind": "mirred"}),
                         ("basic", {})]:
        sc = scenarios.get(name, **params)
        log = session.run(sc)
        assert log.packets(), log.timeline()
        assert log.header["kernel"].endswith("-labkit")
        assert left_in_guest(session) == CLEAN
        fds.append(session.state()["fds"])
    assert len(set(fds)) == 1, f"the worker's open fds grow: {fds}"
    assert session.ready["pid"] == pid


def test_verifier_reject_shows_the_verifier_and_the_source_line(session):
    sc = scenarios.get("basic")
    bad = dataclasses.replace(sc, attach=(Attach(str(paths.bpf_build_dir() / "fail" / "no_null_check.bpf.o"),
                                                 "no_null_check", "tc/ingress", "b", "lk-b0"),))
    with pytest.raises(VerifierError) as err:
        session.run(bad)
    one_line(err.value)
    assert "no_null_check" in str(err.value)
    assert "no_null_check.bpf.c:" in err.value.details, err.value.details
    assert left_in_guest(session) == CLEAN
    assert session.run(sc).packets()  # the worker goes on


def test_a_device_that_does_not_exist(session):
    sc = scenarios.get("basic")
    bad = dataclasses.replace(sc, hooks=(Hook("tc/ingress", "b", "lk-nope0"),))
    with pytest.raises(ScenarioError) as err:
        session.run(bad)  # refused on the host, before the VM is asked
    assert "lk-nope0" in one_line(err.value)
    # The guest checks too: the same scenario sent without the host's check.
    raw = bad.to_dict()
    with pytest.raises(ScenarioFailed) as err:
        session.request({"op": "run", "scenario": raw}, timeout=30, what="scenario basic")
    assert "lk-nope0" in one_line(err.value)
    assert left_in_guest(session) == CLEAN


@pytest.mark.parametrize("args,message", [
    (["tunnel", "-p", "kind=wireguard"], "kind=wireguard is not one of gre, ipip, vxlan, geneve"),
    (["nope"], "no scenario named 'nope'"),
])
def test_invalid_scenario_on_the_command_line(args, message, tmp_path):
    res = labkit("record", *args, "-o", str(tmp_path / "x.jsonl"))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()], res.stderr
    assert message in res.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_invalid_address_never_reaches_the_vm(session):
    sc = scenarios.get("basic")
    bad = dataclasses.replace(sc, packets=(Packet("a", "10.0.0.256"),))
    with pytest.raises(ScenarioError, match="bad IPv4 address '10.0.0.256'"):
        session.run(bad)


def geneve_flood():
    """The GENEVE tunnel scenario, and a run request for 1000 of its packets
    (built beforehand, so a timer started before the request measures the run):
    sending starts about 0.45 s into the run and takes about 0.5 s; the run as
    a whole takes seconds."""
    sc = scenarios.get("tunnel", kind="geneve")
    return sc, run_message(dataclasses.replace(sc, packets=(dataclasses.replace(sc.packets[0], count=1000),)))


def test_interrupt_during_traffic(session):
    sc, flood = geneve_flood()
    session.run(sc)  # warm
    timer = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Interrupted) as err:
            session.request(flood, timeout=60, what="scenario tunnel")
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 10
    assert "removed" in one_line(err.value)
    assert left_in_guest(session) == CLEAN
    assert session.run(sc).packets()


def test_deadline_restarts_the_worker_and_sweeps(session):
    sc = scenarios.get("tunnel", kind="gre")
    old = session.ready["pid"]
    with pytest.raises(GuestTimeout) as err:
        session.run(sc, timeout=0.3)
    assert "did not finish within 0.3s; the worker was restarted" in one_line(err.value)
    assert session.ready["pid"] != old
    assert left_in_guest(session) == CLEAN
    assert session.run(sc).packets()


def test_vm_killed_mid_run():
    _ready()
    before = set(lab_qemus())
    dirs = set(paths.run_dir().glob("run-*"))
    s = Session().start()
    try:
        s.run(scenarios.get("basic"))
        pid = s.lab.pid
        timer = threading.Timer(0.4, os.kill, (pid, signal.SIGKILL))
        timer.start()
        with pytest.raises(VMError) as err:
            s.run(scenarios.get("tunnel", kind="geneve"))
        timer.cancel()
        assert "the lab VM stopped during scenario tunnel" in one_line(err.value)
    finally:
        s.close()
    assert not set(lab_qemus()) - before, "QEMU left behind"
    assert set(paths.run_dir().glob("run-*")) <= dirs, "run directory left behind"


def _cell(kc, code, timeout=120):
    """Run code in the kernel; its execute_reply content and what it printed."""
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return kc.get_shell_msg(timeout=timeout)["content"], "".join(out)


def test_a_jupyter_interrupt_stops_the_cell_and_keeps_the_vm():
    # JupyterLab's interrupt button, and nbclient before it shuts a kernel
    # down, send SIGINT to the kernel's whole process group.
    _ready()
    from jupyter_client.manager import start_new_kernel

    before = set(lab_qemus())
    dirs = set(paths.run_dir().glob("run-*"))
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(paths.PROJECT))
    try:
        reply, _ = _cell(kc, "from labkit.course.lesson import Lesson\nlab = Lesson('live').start()\n"
                             "log = lab.run('tunnel', kind='geneve')")
        assert reply["status"] == "ok", reply
        kc.execute("import time\ntime.sleep(60)")
        time.sleep(2)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)["content"]
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        reply, out = _cell(kc, "print(lab.session.lab.alive(), bool(lab.run('tunnel', kind='geneve').packets()))")
        assert reply["status"] == "ok", reply
        assert out.split() == ["True", "True"], out
    finally:
        kc.stop_channels()
        km.shutdown_kernel()  # interrupts the group first, then the kernel closes the lesson at exit
    assert not set(lab_qemus()) - before, "QEMU left behind"
    assert set(paths.run_dir().glob("run-*")) <= dirs, "run directory left behind"


def test_record_and_show(tmp_path):
    _ready()
    out = tmp_path / "veth.jsonl"
    res = labkit("record", "netns", "-p", "path=veth", "-o", str(out))
    assert res.returncode == 0, res.stderr
    shown = labkit("show", str(out))
    assert shown.returncode == 0
    assert "skb_scrub_packet(xnet=1) from __dev_forward_skb2" in shown.stdout
    assert "storage_a=created" in shown.stdout and "storage_a=absent" in shown.stdout


def test_doctor_reaches_the_worker():
    _ready()
    res = labkit("doctor", "--vm", "--no-probe")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "lab VM agent" in res.stdout and "scenario worker ready in" in res.stdout
