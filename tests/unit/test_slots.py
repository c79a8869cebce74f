"""The machine-wide VM cap: a real slot broker on a real socket. Students are child processes that
drop to uids of their own (the tests run as root) and hold a slot until told, or are killed."""

import contextlib
import os
import queue
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from labkit import paths
from labkit.errors import LabError
from labkit.vm import slots
from labkit.vm.slotbroker import Broker

A, B, C = 60001, 60002, 60003  # students: uids with no account, which SO_PEERCRED reports all the same
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="a student is another uid: only root can setuid to one")

STUDENT = """
import os, socket, sys
from labkit.vm import slots
uid, kind, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
try:
    if kind == "run":
        s = slots.running_slot()
        print("held", s.index, flush=True)
        sys.stdin.readline()
    elif kind == "boot":
        with slots.boot_slot(progress=lambda t: print(t, flush=True), timeout=timeout) as s:
            print("booting", s.index, flush=True)
            sys.stdin.readline()
    else:  # the attack: 50 connections asking for both kinds, all kept open; twice
        held = []
        for round in range(2):
            for i in range(50):
                c = socket.socket(socket.AF_UNIX)
                held.append(c)
                try:
                    c.connect(os.environ[slots.ENV])
                    c.send(b"run\\n" if i % 2 else b"boot\\n")
                except OSError:
                    pass
            print("opened", round, flush=True)
            sys.stdin.readline()
    print("released", flush=True)
except slots.SlotsFull as exc:
    print("refused", exc.kind, exc.message, flush=True)
"""

CROWD = """
import os, socket, sys, time
for line in sys.stdin:  # "waiter <uid>": queues for a boot slot, done once it has it; "sleeper <uid>": never reads
    what, uid = line.split()
    if os.fork() == 0:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))
        c = socket.socket(socket.AF_UNIX)
        c.connect(sys.argv[1])
        c.sendall(b"boot\\n")
        if what == "sleeper":
            time.sleep(30)
        for reply in c.makefile("rb"):
            if reply.startswith(b"ok"):
                break
        os._exit(0)
"""


class Student:
    """A child process as uid that takes a slot and keeps it until told (or killed)."""

    def __init__(self, uid, kind="run", timeout=30, notebook=None):
        env = dict(os.environ, PYTHONPATH=str(paths.PROJECT))
        env.pop("JPY_SESSION_NAME", None)
        if notebook:
            env["JPY_SESSION_NAME"] = notebook
        self.proc = subprocess.Popen([sys.executable, "-c", STUDENT, str(uid), kind, str(timeout)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines, self.said = [], queue.Queue()
        threading.Thread(target=lambda: [self.said.put(line) for line in self.proc.stdout] + [self.said.put("")],
                         daemon=True).start()

    def expect(self, prefix, timeout=10):
        """Read lines until one starts with prefix; that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.said.get(timeout=max(0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                self.proc.wait()
                raise AssertionError(f"child ended before {prefix!r}: {self.lines} {self.proc.stderr.read()}")
            self.lines.append(line.strip())
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"no {prefix!r} within {timeout} s: {self.lines}")

    def release(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def settle(broker, check, timeout=5):
    """The broker's status once check(status) holds (it acts on a hang-up in its own thread)."""
    deadline = time.monotonic() + timeout
    while not check(st := broker.status()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the broker did not get there: {st}")
        time.sleep(0.02)
    return st


def uids(entries):
    return [e and e["uid"] for e in entries]


def talk(path, data: bytes) -> bytes:
    """A raw client: send data, then everything the broker says until it hangs up."""
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    c.connect(str(path))
    got = b""
    with contextlib.suppress(BrokenPipeError):  # it may hang up before all was sent (and say why)
        c.sendall(data)
    with contextlib.suppress(ConnectionResetError):  # it hung up on what it had not read yet
        while chunk := c.recv(4096):
            got += chunk
    c.close()
    return got


@pytest.fixture
def sockdir():
    """A 0755 directory as the hub makes it (not tmp_path: other uids must reach the socket)."""
    d = Path(tempfile.mkdtemp(prefix="labkit-slots-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker(sockdir, monkeypatch):
    """The hub's broker with a cap of 2 running, 1 booting; LABKIT_VM_SLOTS names its socket. This process is a
    user too (root: treated as any other uid)."""
    b = Broker(sockdir / "slots.sock", 2, 1).start()
    monkeypatch.setenv(slots.ENV, str(b.path))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    yield b
    b.close()


@pytest.fixture
def student(broker):
    children = []

    def start(uid, kind="run", timeout=30, notebook=None):
        children.append(Student(uid, kind, timeout, notebook))
        return children[-1]

    yield start
    for s in children:
        s.stop()


def test_no_env_means_no_cap(monkeypatch):
    monkeypatch.delenv(slots.ENV, raising=False)
    assert slots.config() is None and slots.config("") is None
    many = [slots.running_slot() for _ in range(5)]
    assert all(s.held and not s.capped for s in many)
    with slots.boot_slot(progress=pytest.fail, timeout=0) as b, slots.boot_slot(timeout=0) as b2:
        assert not b.capped and not b2.capped


def test_config_is_the_socket_or_refused_in_one_line():
    assert slots.config("/run/skb-lab-hub/slots.sock") == Path("/run/skb-lab-hub/slots.sock")
    with pytest.raises(LabError, match="old <dir>:<running>:<booting> form.*labkit hub start"):
        slots.config("/run/labkit/slots:12:2")
    with pytest.raises(LabError, match="not the absolute path"):
        slots.config("slots.sock")


def test_the_socket_is_open_to_every_user_and_close_removes_it(broker):
    st = os.lstat(broker.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666 and st.st_uid == os.geteuid()
    held = slots.running_slot()
    broker.close()
    assert not broker.path.exists()
    with pytest.raises(LabError, match="no lab VM slot broker"):
        slots.running_slot()
    held.release()


def test_a_missing_or_dead_broker_says_who_runs_it(sockdir, monkeypatch):
    fix = "the workshop hub runs the slot broker (labkit hub start); or unset LABKIT_VM_SLOTS"
    monkeypatch.setenv(slots.ENV, str(sockdir / "nope.sock"))
    with pytest.raises(LabError, match=r"no lab VM slot broker at .*nope.sock") as exc:
        slots.running_slot()
    assert exc.value.fix == fix
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(sockdir / "dead.sock"))  # a socket nobody listens on: refused
    dead.close()
    monkeypatch.setenv(slots.ENV, str(sockdir / "dead.sock"))
    with pytest.raises(LabError, match="no lab VM slot broker") as exc:
        with slots.boot_slot(timeout=1):
            pass
    assert exc.value.fix == fix


def test_start_replaces_a_stale_socket_and_nothing_else(sockdir):
    (sockdir / "file").write_text("keep")
    with pytest.raises(LabError, match="not a socket"):
        Broker(sockdir / "file", 1, 1).start()
    assert (sockdir / "file").read_text() == "keep"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sockdir / "s.sock"))
    stale.close()
    with Broker(sockdir / "s.sock", 1, 1) as b:
        with pytest.raises(LabError, match="already listens"):
            Broker(sockdir / "s.sock", 1, 1).start()
        assert b.status()["running"] == [None]
    open_dir = sockdir / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)  # anyone could put their own socket there
    with pytest.raises(LabError, match="writable by everyone"):
        Broker(open_dir / "s.sock", 1, 1).start()
    open_dir.chmod(0o1777)  # sticky, like /tmp in a pod: nobody else may remove or rename it
    Broker(open_dir / "s.sock", 1, 1).start().close()


@needs_root
def test_a_killed_holder_frees_its_slot_and_a_full_cap_refuses_at_once(broker, student):
    a, b = student(A), student(B)
    assert {a.expect("held"), b.expect("held")} == {"held 0", "held 1"}
    assert sorted(uids(broker.status()["running"])) == [A, B]
    t0 = time.monotonic()
    with pytest.raises(slots.SlotsFull, match="all 2 lab VMs on this server are in use") as exc:
        slots.running_slot()
    assert exc.value.kind == "full" and time.monotonic() - t0 < 1
    assert student(C).expect("refused") == "refused full all 2 lab VMs on this server are in use"
    freed = int(a.lines[-1].split()[1])
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    with slots.running_slot() as s:  # at once: the broker sees the hang-up when it looks
        assert s.index == freed and s.held and s.capped
    assert not s.held
    settle(broker, lambda st: uids(st["running"]).count(None) == 1)


@needs_root
def test_one_running_slot_per_uid_names_the_notebook_that_has_it(broker, student):
    first = student(A, notebook="/home/a/lab/01_first_storage.ipynb")
    first.expect("held 0")
    assert student(A).expect("refused") == "refused mine you already have a lab VM running in 01_first_storage.ipynb"
    first.release()
    first.proc.wait(5)
    student(A).expect("held 0")
    with slots.running_slot():  # root is a user like any other
        with pytest.raises(slots.SlotsFull, match=rf"already have a lab VM running \(process {os.getpid()}\)") as exc:
            slots.running_slot()
    assert exc.value.kind == "mine" and "shut that notebook's kernel down" in str(exc.value)


def test_the_notebook_name_is_untrusted(broker):
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(str(broker.path))
    raw.sendall(b"run <b>x</b>\x1b[31m" + "é".encode() + b"y" * 400 + b"\n")
    assert raw.recv(64) == b"ok 0\n"
    with pytest.raises(slots.SlotsFull, match="already have a lab VM running in") as exc:
        slots.running_slot()
    name = exc.value.message.split(" in ", 1)[1]
    assert name.startswith("_b_x__b__") and "é" in name and len(name) <= 80 and "<" not in name and "\x1b" not in name
    raw.close()


@needs_root
def test_one_uid_with_50_connections_holds_one_slot_of_each_kind(sockdir, monkeypatch):
    with Broker(sockdir / "big.sock", 3, 2) as broker:
        monkeypatch.setenv(slots.ENV, str(broker.path))
        attacker = Student(A, "attack")
        try:
            for round in (0, 1):
                attacker.expect(f"opened {round}")
                st = settle(broker, lambda st: A in uids(st["running"]) and A in uids(st["booting"]))
                time.sleep(0.2)  # whatever else it sent has been served
                st = broker.status()
                assert uids(st["running"]).count(A) == 1 and uids(st["booting"]).count(A) == 1
                assert A not in uids(st["waiting"]) and st["connections"][A] <= 8
                attacker.release()
            other = Student(B)  # another student still gets a VM
            assert other.expect("held").startswith("held")
            other.stop()
            with slots.running_slot() as run, slots.boot_slot(progress=pytest.fail, timeout=0) as boot:
                assert run.held and boot.held
        finally:
            attacker.stop()


@needs_root
def test_boot_queue_is_first_come_first_served_one_place_per_uid(broker, student):
    first = student(A, "boot")
    first.expect("booting 0")
    assert student(A, "boot").expect("refused") == "refused mine you already have a lab VM booting (process " \
        f"{first.proc.pid})"
    second = student(B, "boot")
    assert second.expect("waiting") == "waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"
    assert student(B, "boot").expect("refused").startswith("refused mine")  # queued counts too
    third = student(C, "boot")
    assert third.expect("waiting") == "waiting for a boot slot: 1 ahead"
    assert uids(broker.status()["waiting"]) == [B, C]
    first.release()
    second.expect("booting 0")
    assert third.expect("waiting") == "waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"
    second.release()
    third.expect("booting 0")
    third.release()
    third.expect("released")
    for h in (first, second, third):
        assert h.proc.wait(5) == 0
    settle(broker, lambda st: st["booting"] == [None] and st["waiting"] == [])


@needs_root
def test_boot_queue_gives_up_after_its_timeout(broker, student):
    student(A, "boot").expect("booting")
    heard = []
    t0 = time.monotonic()
    with pytest.raises(slots.SlotsFull, match=r"no boot slot for the lab VM within 1 s") as exc:
        with slots.boot_slot(progress=heard.append, timeout=0.6):
            pytest.fail("got a boot slot that is held")
    assert exc.value.kind == "boot" and "re-run this cell later" in str(exc.value)
    assert 0.6 <= time.monotonic() - t0 < 3
    assert heard == ["waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"]
    settle(broker, lambda st: st["waiting"] == [])  # it left the queue


def test_garbage_and_too_many_connections_do_not_stop_the_broker(broker):
    for junk in (b"hello\n", b"\xff\xfe\n", b"run" + b"x" * 600, b"run\nrun\n", b"boot\n\n"):
        assert talk(broker.path, junk).startswith(b"error "), junk
    half = socket.socket(socket.AF_UNIX)  # a request never finished
    half.connect(str(broker.path))
    half.sendall(b"run")
    idle = [half]
    for _ in range(7):  # with it, this uid's 8 connections
        idle.append(socket.socket(socket.AF_UNIX))
        idle[-1].connect(str(broker.path))
    settle(broker, lambda st: st["connections"].get(os.getuid()) == 8)
    assert talk(broker.path, b"run\n") == b"error too many connections of this user\n"
    with pytest.raises(LabError, match="refused: error too many connections"):
        slots.running_slot()
    for s in idle:
        s.close()
    with slots.running_slot() as run, slots.boot_slot(progress=pytest.fail, timeout=0) as boot:
        assert (run.index, boot.index) == (0, 0)


def test_at_the_connection_cap_a_request_not_read_yet_is_not_taken_for_a_hang_up(broker):
    idle = [socket.socket(socket.AF_UNIX) for _ in range(7)]
    for s in idle:
        s.connect(str(broker.path))
    settle(broker, lambda st: st["connections"].get(os.getuid()) == 7)
    eighth, ninth = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    with broker._lock:  # the broker sees both at once: the eighth's request still unread when the ninth comes
        for s in (eighth, ninth):
            s.connect(str(broker.path))
            s.sendall(b"run\n")
    eighth.settimeout(5), ninth.settimeout(5)
    assert eighth.recv(64) == b"ok 0\n" and ninth.recv(64) == b"error too many connections of this user\n"
    for s in (*idle, eighth, ninth):
        s.close()


@needs_root
def test_a_client_that_never_reads_is_dropped(sockdir):
    with Broker(sockdir / "tiny.sock", 1, 1, sndbuf=1, max_out=16) as broker:
        crowd = subprocess.Popen([sys.executable, "-c", CROWD, str(broker.path)], stdin=subprocess.PIPE, text=True,
                                 start_new_session=True)
        try:
            with slots.boot_slot(cfg=broker.path, timeout=5):
                for i in range(12):
                    crowd.stdin.write(f"waiter {61000 + i}\n")
                crowd.stdin.flush()
                settle(broker, lambda st: len(st["waiting"]) == 12)
                crowd.stdin.write("sleeper 61100\n")
                crowd.stdin.flush()
                settle(broker, lambda st: uids(st["waiting"])[-1:] == [61100])
            # the waiters boot and go one by one: each step tells the sleeper where it is, and it never reads
            st = settle(broker, lambda st: st["waiting"] == [] and st["booting"] == [None])
            assert 61100 not in st["connections"]
            with slots.boot_slot(cfg=broker.path, progress=pytest.fail, timeout=0) as boot:
                assert boot.held
        finally:
            os.killpg(crowd.pid, signal.SIGKILL)
            crowd.wait()
            crowd.stdin.close()


# -- a lesson under the cap (the VM is a stand-in: the decision is what is tested) -----------


class FakeSession:
    """Stands in for labkit.runtime.session.Session: records whether this uid held a boot slot while it 'booted'."""

    made = []
    broker = None
    lab = None  # the banner then says the VM starts at the first run

    def __init__(self, clock="wall"):
        self.closed, self.booted_under_slot, self.clock = False, None, clock
        FakeSession.made.append(self)

    def start(self):
        self.booted_under_slot = uids(FakeSession.broker.status()["booting"]) == [os.getuid()]

    def close(self):
        self.closed = True


@pytest.fixture
def lessons(broker, monkeypatch):
    from labkit.course import lesson
    from labkit.runtime import session

    monkeypatch.setattr(lesson, "live_possible", lambda: (True, "stub"))
    monkeypatch.setattr(session, "Session", FakeSession)
    monkeypatch.setattr(lesson, "_last", None)
    FakeSession.made, FakeSession.broker = [], broker
    yield lesson
    if lesson._last is not None:
        lesson._last.close()


@needs_root
def test_a_full_cap_replays_with_a_banner_why(broker, student, lessons):
    student(A).expect("held"), student(B).expect("held")
    lab = lessons.start("live")
    assert not lab.live and lab.session is None and FakeSession.made == []
    assert ("all 2 lab VMs on this server are in use; this notebook replays recordings made on the lab kernel; "
            "re-run this cell later for a live VM") in lab.banner_html()
    assert "REPLAY" in lab.banner_html()


def test_live_holds_its_running_slot_until_closed_and_boots_under_a_boot_slot(broker, lessons):
    lab = lessons.start("live")
    assert lab.live and lab.slot.index == 0 and lab.fallback is None
    assert FakeSession.made[0].booted_under_slot is True
    st = settle(broker, lambda st: st["booting"] == [None])  # the boot slot goes once the VM is up
    assert uids(st["running"]) == [os.getuid(), None]  # the running slot stays
    lab.close()
    assert FakeSession.made[0].closed
    settle(broker, lambda st: st["running"] == [None, None])


def test_rerunning_the_setup_cell_closes_the_last_vm(broker, lessons):
    first = lessons.start("live")
    second = lessons.start("live")  # one per user: it would be refused if the first kept its slot
    assert second.live and second.slot.index == 0
    assert FakeSession.made[0].closed and first.slot is None


@needs_root
def test_a_boot_queue_timeout_replays_and_gives_the_slot_back(broker, student, lessons, monkeypatch, capsys):
    student(A, "boot").expect("booting")
    monkeypatch.setattr(lessons, "BOOT_WAIT", 0.3)
    lab = lessons.start("live")
    assert not lab.live and FakeSession.made == []
    assert "waiting for a boot slot: 0 ahead" in capsys.readouterr().out
    assert "no boot slot for the lab VM within" in lab.banner_html()
    settle(broker, lambda st: st["running"] == [None, None] and st["waiting"] == [])
