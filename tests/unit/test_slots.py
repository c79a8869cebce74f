"""The machine-wide VM cap: real slot files in tmp_path, real flocks held by child processes."""

import os
import stat
import subprocess
import sys
import time

import pytest

from labkit import paths
from labkit.errors import LabError
from labkit.vm import slots

HOLD = """
import sys
from labkit.vm import slots
kind = sys.argv[1]
if kind == "run":
    s = slots.running_slot()
    print("held", s.index, flush=True)
    sys.stdin.readline()
else:
    with slots.boot_slot(progress=lambda t: print(t, flush=True), timeout=float(sys.argv[2]), poll=0.05) as s:
        print("booting", s.index, flush=True)
        sys.stdin.readline()
    print("released", flush=True)
"""


class Holder:
    """A child process that takes a slot and keeps it until told (or killed)."""

    def __init__(self, tmp_path, spec, kind="run", user="u1", timeout=30):
        env = dict(os.environ, LABKIT_VM_SLOTS=spec, LABKIT_CACHE=str(tmp_path / user), PYTHONPATH=str(paths.PROJECT))
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(timeout)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []

    def expect(self, prefix, timeout=20):
        """Read lines until one starts with prefix; that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
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


@pytest.fixture
def cap(tmp_path, monkeypatch):
    """A cap of 2 running, 1 booting in tmp_path/slots; this process is user "me"."""
    d = tmp_path / "slots"
    spec = f"{d}:2:1"
    slots.prepare(spec)
    monkeypatch.setenv(slots.ENV, spec)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "me"))
    children = []

    def hold(kind="run", user="u1", timeout=30):
        h = Holder(tmp_path, spec, kind, user, timeout)
        children.append(h)
        return h

    yield d, hold
    for h in children:
        h.stop()


def test_no_env_means_no_cap(monkeypatch):
    monkeypatch.delenv(slots.ENV, raising=False)
    assert slots.config() is None
    many = [slots.running_slot() for _ in range(5)]
    assert all(s.held and not s.capped for s in many)
    with slots.boot_slot(progress=pytest.fail, timeout=0) as b, slots.boot_slot(timeout=0) as b2:
        assert not b.capped and not b2.capped


def test_config_is_parsed_or_refused_in_one_line():
    assert slots.config("/run/a:b/slots:12:2") == slots.Config(paths.Path("/run/a:b/slots"), 12, 2)
    for bad in ("/x", "/x:3", "/x:a:1", "/x:0:1", ":3:1", "/x:3:0"):
        with pytest.raises(LabError, match="not <dir>:<max running>:<max booting>"):
            slots.config(bad)


def test_prepare_makes_a_shared_directory(cap):
    d, _ = cap
    assert stat.S_IMODE(d.stat().st_mode) == 0o1777
    assert sorted(p.name for p in d.iterdir()) == ["boot-0", "run-0", "run-1"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in d.iterdir()} == {0o666}


def test_cap_reached_refuses_at_once(cap):
    d, hold = cap
    a, b = hold(user="a"), hold(user="b")
    assert {a.expect("held"), b.expect("held")} == {"held 0", "held 1"}
    t0 = time.monotonic()
    with pytest.raises(slots.SlotsFull, match="all 2 lab VMs on this server are in use") as exc:
        slots.running_slot()
    assert exc.value.kind == "full" and time.monotonic() - t0 < 1
    assert f"uid={os.getuid()}" in (d / "run-0").read_text()  # who holds it, for a human


def test_a_dead_holder_frees_its_slot(cap):
    _, hold = cap
    a, b = hold(user="a"), hold(user="b")
    a.expect("held"), b.expect("held")
    freed = int(a.lines[-1].split()[1])
    a.proc.kill()
    a.proc.wait()
    with slots.running_slot() as s:
        assert s.index == freed and s.held
    assert not s.held
    with slots.running_slot() as s:  # and released again on exit
        assert s.index == freed


def test_one_running_slot_per_user(cap, tmp_path):
    _, hold = cap
    mine = hold(user="me")  # the same user's other notebook
    mine.expect("held 0")
    with pytest.raises(slots.SlotsFull, match=f"you already have a lab VM running .*{mine.proc.pid}") as exc:
        slots.running_slot()
    assert exc.value.kind == "mine" and "shut that notebook's kernel down" in str(exc.value)
    assert stat.S_IMODE((tmp_path / "me").stat().st_mode) == 0o700
    mine.release()
    mine.proc.wait(10)
    with slots.running_slot() as s:
        with pytest.raises(slots.SlotsFull, match="already have a lab VM"):
            slots.running_slot()  # this process too
    assert s.index == 0


def test_boot_queue_is_first_come_first_served(cap):
    d, hold = cap
    first = hold("boot", user="a")
    first.expect("booting 0")
    second = hold("boot", user="b")
    assert second.expect("waiting") == "waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"
    third = hold("boot", user="c")
    assert third.expect("waiting") == "waiting for a boot slot: 1 ahead"
    first.release()
    second.expect("booting 0")
    assert third.expect("waiting") == "waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"
    second.release()
    third.expect("booting 0")
    third.release()
    third.expect("released")
    for h in (first, second, third):
        assert h.proc.wait(10) == 0
    assert not [p for p in os.listdir(d) if p.startswith(("wait-", ".tmp-"))]


def test_boot_queue_gives_up_after_its_timeout(cap):
    d, hold = cap
    hold("boot", user="a").expect("booting")
    heard = []
    t0 = time.monotonic()
    with pytest.raises(slots.SlotsFull, match=r"no boot slot for the lab VM within 1 s") as exc:
        with slots.boot_slot(progress=heard.append, timeout=0.6, poll=0.05):
            pytest.fail("got a boot slot that is held")
    assert exc.value.kind == "boot" and "re-run this cell later" in str(exc.value)
    assert 0.6 <= time.monotonic() - t0 < 3
    assert heard == ["waiting for a boot slot: 0 ahead, all 1 in use by VMs booting"]
    assert not [p for p in os.listdir(d) if p.startswith("wait-")]  # left the queue


def test_a_crashed_waiter_does_not_block_the_queue(cap):
    d, hold = cap
    first = hold("boot", user="a")
    first.expect("booting")
    waiter = hold("boot", user="b")
    waiter.expect("waiting")
    waiter.proc.kill()
    waiter.proc.wait()
    stale = d / "wait-00000000000000000001-0000000001"  # and one older than anyone, unlocked
    stale.write_text("")
    os.utime(stale, (1, 1))
    first.release()
    heard = []
    with slots.boot_slot(progress=heard.append, timeout=10, poll=0.05) as s:
        assert s.index == 0
    assert not stale.exists()  # ours and dead: swept
    assert all(" 0 ahead" in h for h in heard), heard


def test_planted_files_are_not_slots(cap):
    d, hold = cap
    (d / "run-0").unlink()
    os.mkfifo(d / "run-0")  # would block an open without O_NONBLOCK
    (d / "run-1").unlink()
    (d / "run-1").symlink_to("/etc/passwd")
    t0 = time.monotonic()
    with pytest.raises(slots.SlotsFull, match="all 2 lab VMs"):
        slots.running_slot()
    assert time.monotonic() - t0 < 1


def test_a_missing_directory_says_who_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv(slots.ENV, f"{tmp_path / 'nope'}:2:1")
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "me"))
    with pytest.raises(LabError, match="slot directory .*nope does not exist"):
        slots.running_slot()
    with pytest.raises(LabError, match="does not exist"):
        with slots.boot_slot(timeout=1):
            pass


# -- a lesson under the cap (the VM is a stand-in: the decision is what is tested) -----------


class FakeSession:
    """Stands in for labkit.runtime.session.Session: records whether a boot slot was held while it 'booted'."""

    made = []

    lab = None  # the banner then says the VM starts at the first run

    def __init__(self, clock="wall"):
        self.closed, self.booted_under_slot, self.clock = False, None, clock
        FakeSession.made.append(self)

    def start(self):
        other = slots._take(slots.config(), "boot", 1)  # a second taker in this process must not get one
        self.booted_under_slot = other is None
        if other:
            other.release()

    def close(self):
        self.closed = True


@pytest.fixture
def lessons(cap, monkeypatch):
    from labkit.course import lesson
    from labkit.runtime import session

    monkeypatch.setattr(lesson, "live_possible", lambda: (True, "stub"))
    monkeypatch.setattr(session, "Session", FakeSession)
    monkeypatch.setattr(lesson, "_last", None)
    FakeSession.made = []
    yield lesson
    if lesson._last is not None:
        lesson._last.close()


def _free(d, name):
    fd = slots._open(d / name)
    try:
        return slots._lock(fd)
    finally:
        os.close(fd)


def test_a_full_cap_replays_with_a_banner_why(cap, lessons):
    _, hold = cap
    hold(user="a").expect("held"), hold(user="b").expect("held")
    lab = lessons.start("live")
    assert not lab.live and lab.session is None and FakeSession.made == []
    assert ("all 2 lab VMs on this server are in use; this notebook replays recordings made on the lab kernel; "
            "re-run this cell later for a live VM") in lab.banner_html()
    assert "REPLAY" in lab.banner_html()


def test_live_holds_its_running_slot_until_closed_and_boots_under_a_boot_slot(cap, lessons):
    d, _ = cap
    lab = lessons.start("live")
    assert lab.live and lab.slot.index == 0 and lab.fallback is None
    assert FakeSession.made[0].booted_under_slot is True
    assert _free(d, "boot-0")  # the boot slot goes once the VM is up
    assert not _free(d, "run-0")  # the running slot stays
    lab.close()
    assert FakeSession.made[0].closed and _free(d, "run-0")


def test_rerunning_the_setup_cell_closes_the_last_vm(cap, lessons):
    first = lessons.start("live")
    second = lessons.start("live")  # one per user: it would be refused if the first kept its slot
    assert second.live and second.slot.index == 0
    assert FakeSession.made[0].closed and first.slot is None


def test_a_boot_queue_timeout_replays_and_gives_the_slot_back(cap, lessons, monkeypatch, capsys):
    d, hold = cap
    hold("boot", user="a").expect("booting")
    monkeypatch.setattr(lessons, "BOOT_WAIT", 0.3)
    lab = lessons.start("live")
    assert not lab.live and FakeSession.made == []
    assert "waiting for a boot slot: 0 ahead" in capsys.readouterr().out
    assert "no boot slot for the lab VM within" in lab.banner_html()
    assert _free(d, "run-0")
