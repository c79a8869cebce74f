"""A student holding the room's code attacks the workshop hub; each attack must fail.

One per way in found by the review of the hub (the numbers are its list):
1 an ex-admin's login is no admin; 2 a taken name does not open with the
room's code; 3 servers past the machine's capacity get no server, and every
student together is limited; 4 the instructor's session never loads a
student's pages, and a student's config does not reach their server; 5 PAM
refuses the accounts to cron and su; 6 a student holding every slot
connection does not stop another's VM; 7 a disk fill stops at the
student's bound, and their /tmp is theirs and goes with their server; 8
`cleanup_as` has no terminal; 9 a poisoned progress file leaves the
instructor view serving the others; 10 no clear text off the loopback, no
short codes, no password on the screen. Last, `labkit hub end` archives
and removes the accounts.

Everything is real: the hub's own CLI from an install, HTTP, the students'
unix users, PAM, their lab VMs. Only the test's own users are touched.
"""

import json
import os
import pty
import pwd
import select
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from labkit.hub import cgroups
from labkit.hub.auth import unix_name
from tests.conftest import need
from tests.host import hubtools as ht

pytestmark = pytest.mark.timeout(900)

DISK = "64M"


@pytest.fixture(scope="module")
def hub(hub_install):
    """A hub whose database says one student is admin (as an earlier --admin or a tick in /hub/admin
    leaves it): started, a student made, stopped, the flag set, started again on the same state."""
    state = hub_install / "state-attacks"
    admin = f"teach-{os.urandom(3).hex()}"
    first = ht.start_hub(hub_install, state=state, admin=admin, max_vms=2, disk=DISK,
                         extra=["--max-servers", "2"])
    users = first.users
    try:
        ex = ht.login(first, ht.test_names(1, "exadm")[0])
        assert first.stop() == 0, first.log()
        with sqlite3.connect(state / "jupyterhub.sqlite") as con:
            con.execute("update users set admin=1 where name=?", (ex.name,))
        hub = ht.start_hub(hub_install, state=state, code=first.code, admin=admin, max_vms=2, disk=DISK,
                           extra=["--max-servers", "2"])
        hub.secret, hub.users = first.secret, users
        hub.ex_admin = ex.name
        yield hub
    finally:
        for h in (first, locals().get("hub")):
            if h is not None:
                h.stop()
        ht.remove_users(users)


@pytest.fixture(scope="module")
def pair(hub):
    """Two students with servers running: the machine's limit (--max-servers 2)."""
    a, b = (ht.login(hub, n) for n in ht.test_names(2, "atk"))
    for s in (a, b):
        ht.spawn(hub, s)
    return a, b


def has_account(name) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def in_kernel(hub, student, code) -> str:
    with ht.kernel(hub, student, timeout=300) as k:
        res = k.execute(code)
    assert res["status"] == "ok", res["outputs"]
    return "".join(o.get("text", "") for o in res["outputs"])


# 1 -------------------------------------------------------------------------------------------


def test_an_ex_admin_logs_in_as_no_admin(hub):
    s = ht.login(hub, hub.ex_admin, code="")
    assert s.api("GET", f"/users/{s.name}").json()["admin"] is False
    assert s.api("GET", "/users").status_code == 403  # no list of students, no tokens, no shutdown
    assert s.api("POST", "/shutdown").status_code == 403


# 2 -------------------------------------------------------------------------------------------


def test_a_taken_name_does_not_open_with_the_room_code(hub):
    victim = ht.login(hub, ht.test_names(1, "victim")[0])
    for password in (hub.code, f"another-{os.urandom(4).hex()}"):
        with pytest.raises(PermissionError):
            ht.login(hub, victim.name, password=password)
    with pytest.raises(PermissionError):  # nor the instructor's, with the room's code
        ht.login(hub, hub.admin, password=hub.code)


# 3 -------------------------------------------------------------------------------------------


def test_past_the_capacity_a_login_gets_no_server(hub, pair):
    c = ht.login(hub, ht.test_names(1, "third")[0])
    r = c.api("POST", f"/users/{c.name}/server")
    assert r.status_code == 429, (r.status_code, r.text)
    time.sleep(2)
    assert ht.server(c) is None
    a = pair[0]
    named = a.api("POST", f"/users/{a.name}/servers/second")  # at most one server per student
    assert named.status_code in (400, 403, 404), named.text
    limits = cgroups.parent_limits(cgroups.detect())
    with open("/proc/meminfo") as fh:
        total = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))
    assert limits["memory"] is not None and limits["memory"] <= total - (2 << 30), limits
    assert limits["cpus"] is not None and limits["cpus"] <= (os.cpu_count() or 1) - 0.5, limits
    assert limits["pids"] is not None and limits["pids"] <= cgroups.PIDS_MAX * 2, limits


# 4 -------------------------------------------------------------------------------------------


def test_the_instructor_never_opens_a_students_server(hub, pair):
    a = pair[0]
    teacher = ht.login(hub, hub.admin)
    r = teacher.get(f"{hub.url}/user/{a.name}/api/contents", headers={"Authorization": f"token {teacher.token}"},
                    timeout=60)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert teacher.api("POST", f"/users/{a.name}/tokens", json={"note": "x"}).status_code == 403
    assert teacher.api("GET", "/users").status_code == 200  # what the instructor needs still works


def test_a_students_config_does_not_reach_their_server(hub, pair):
    a = pair[0]
    home = Path(pwd.getpwnam(a.name).pw_dir)
    marker = home / "config-was-loaded"
    res = ht.as_user(a.name, ["sh", "-c", "mkdir -p ~/.jupyter && printf '%s\\n' "
                                          "\"open('" + str(marker) + "', 'w').write('yes')\" "
                                          "> ~/.jupyter/jupyter_server_config.py"])
    assert res.returncode == 0, res.stderr
    ht.stop(hub, a)
    ht.spawn(hub, a)
    assert not marker.exists(), "the student's ~/.jupyter config ran in their server"


# 5 -------------------------------------------------------------------------------------------


def test_pam_refuses_the_accounts_to_cron_and_su(hub, pair):
    need(bool(shutil.which("pamtester")) and os.path.exists("/etc/pam.d/cron"), "pamtester or cron is not installed",
         "apt-get install cron pamtester (./lab test does it)")
    a = pair[0]
    cron = subprocess.run(["pamtester", "cron", a.name, "acct_mgmt"], capture_output=True, text=True)
    assert cron.returncode != 0 and "expired" in (cron.stdout + cron.stderr), cron.stdout + cron.stderr
    su = subprocess.run(["su", "-s", "/bin/sh", a.name, "-c", "echo ran"], capture_output=True, text=True,
                        stdin=subprocess.DEVNULL)
    assert su.returncode != 0 and "ran" not in su.stdout, su.stdout + su.stderr
    # ... while their server, started without PAM, runs as them
    assert ht.server_pid(ht.uid_of(a.name))


# 6 -------------------------------------------------------------------------------------------

HOARD = """
import os, socket, sys, time
path = os.environ["LABKIT_VM_SLOTS"]
held = []
for i in range(40):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        s.sendall(b"run hoarder\\n" if i % 2 else b"boot hoarder\\n")
    except OSError:
        s.close()
        continue
    held.append(s)
print("holding", len(held), flush=True)
time.sleep(600)
"""


def test_a_student_holding_slot_connections_does_not_stop_anothers_vm(hub, pair):
    a, b = pair
    slots = json.loads((hub.state / "hub.json").read_text())["vm_slots"]
    pw = pwd.getpwnam(a.name)
    hoarder = subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                                sys.executable, "-c", HOARD], env={"LABKIT_VM_SLOTS": slots, "PATH": "/usr/bin:/bin"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/")
    try:
        assert select.select([hoarder.stdout], [], [], 60)[0], "the hoarder did not start"
        assert "holding" in hoarder.stdout.readline()
        out = in_kernel(hub, b, "from labkit.vm import Lab\nlab = Lab()\nlab.start()\n"
                                "print('VM', lab.pid)\nlab.close()\n")
        assert "VM " in out, out
    finally:
        hoarder.kill()
        hoarder.wait()


# 7 -------------------------------------------------------------------------------------------


def test_a_disk_fill_stops_at_the_students_bound(hub, pair):
    a = pair[0]
    def root_free():
        st = os.statvfs("/")
        return st.f_bavail * st.f_frsize

    before = root_free()
    fill = ht.as_user(a.name, ["dd", "if=/dev/zero", "of=fill", "bs=1M", "count=200"], timeout=120)
    assert fill.returncode != 0 and "No space left" in fill.stderr, fill.stderr
    size = os.path.getsize(Path(pwd.getpwnam(a.name).pw_dir) / "fill")
    assert size <= 64 << 20, size
    assert before - root_free() < 80 << 20, "the fill reached the machine's disk"
    c = ht.login(hub, ht.test_names(1, "after-fill")[0])  # the hub's database still takes writes
    assert c.name
    ht.as_user(a.name, ["rm", "-f", "fill"])


def test_a_students_tmp_is_their_own_and_goes_with_their_server(hub, pair):
    a, b = pair
    tag = os.urandom(4).hex()
    out = in_kernel(hub, a, "import os\n"
                            f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
                            f"    open(os.path.join(d, 'mine-{tag}'), 'w').write('x' * 1000)\n"
                            "print(sorted(os.listdir('/tmp')))\n")
    assert f"mine-{tag}" in out
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not os.path.exists(os.path.join(d, f"mine-{tag}")), f"{d} of the machine got the student's file"
    seen = in_kernel(hub, b, f"import os\nprint([d for d in ('/tmp', '/var/tmp', '/dev/shm') "
                             f"if os.path.exists(os.path.join(d, 'mine-{tag}'))])\n")
    assert "[]" in seen, seen
    ht.stop(hub, a)
    uid = ht.uid_of(a.name)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        left = [p for p in Path(d).iterdir() if p.lstat().st_uid == uid]
        assert not left, f"{a.name} left {left}"
    ht.spawn(hub, a)


# 8 -------------------------------------------------------------------------------------------

FAKE_LABKIT = """#!/bin/sh
if [ -e /dev/stdin ] && [ "$(readlink /proc/self/fd/0)" != /dev/null ]; then echo stdin=$(readlink /proc/self/fd/0); fi
if (exec 3</dev/tty) 2>/dev/null; then echo TTY-REACHED; else echo no-tty; fi
"""


def test_cleanup_as_reaches_no_terminal(hub, pair):
    """Run by root from a terminal (the instructor's Ctrl-C), `labkit cleanup` as the student has none."""
    a = pair[0]
    fake = Path("/opt") / f"skb-lab-faketest-{os.urandom(3).hex()}"
    try:
        (fake / "venv" / "bin").mkdir(parents=True)
        exe = fake / "venv" / "bin" / "labkit"
        exe.write_text(FAKE_LABKIT)
        for p in (fake, fake / "venv", fake / "venv" / "bin"):
            os.chmod(p, 0o755)
        os.chmod(exe, 0o755)
        code = ("from pathlib import Path\nfrom labkit.hub.run import cleanup_as\n"
                f"print('LINES', cleanup_as(Path({str(fake)!r}), {a.name!r}))\n")
        pid, fd = pty.fork()
        if pid == 0:  # the instructor's terminal: a pty, our controlling one; the install's labkit
            os.chdir("/")
            python = str(hub.prefix / "venv" / "bin" / "python")
            os.execv(python, [python, "-c", code])
        out = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.waitpid(pid, 0)
        text = out.decode(errors="replace")
        assert "LINES" in text and "no-tty" in text, text
        assert "TTY-REACHED" not in text and "stdin=/dev/pts" not in text, text
    finally:
        shutil.rmtree(fake, ignore_errors=True)


# 9 -------------------------------------------------------------------------------------------


def test_a_poisoned_progress_file_leaves_the_view_serving_the_others(hub, pair):
    a, b = pair
    good = {"exercise": "01", "lesson": "01_first_storage", "passed": True, "summary": "ok",
            "when": "2026-12-07T10:00:00", "mode": "live"}
    poison = "\n".join(["[" * 100000, json.dumps({**good, "passed": "boom"}),
                        *(json.dumps({**good, "exercise": f"x{i}"}) for i in range(150000))]) + "\n"
    for s, text in ((a, poison), (b, json.dumps(good) + "\n")):
        pw = pwd.getpwnam(s.name)
        d = Path(pw.pw_dir) / ".cache" / "labkit"
        ht.as_user(s.name, ["mkdir", "-p", str(d)])
        f = d / "progress.jsonl"
        f.write_text(text)
        os.chown(f, pw.pw_uid, pw.pw_gid)
    teacher = ht.login(hub, hub.admin)
    page = teacher.get(f"{hub.url}/services/instructor/", timeout=60)  # the hub's OAuth, then the page
    assert page.status_code == 200 and b.name in page.text and len(page.content) < 500_000, len(page.content)
    r = teacher.get(f"{hub.url}/services/instructor/api/students", timeout=60)
    assert r.status_code == 200, r.text[-500:]
    rows = {row["name"]: row for row in r.json()["students"]}
    assert rows[b.name]["passed"] == ["01"], rows[b.name]
    assert rows[a.name]["skipped"] > 0 and rows[a.name]["passed"] == [], rows[a.name]


# 10 ------------------------------------------------------------------------------------------


def test_no_clear_text_off_the_loopback_and_no_short_codes(hub):
    labkit = str(hub.prefix / "venv" / "bin" / "labkit")
    base = [labkit, "hub", "start", "--prefix", str(hub.prefix), "--state", str(hub.prefix / "state-refused")]
    off = subprocess.run([*base, "--ip", "0.0.0.0", "--port", str(ht.free_port())], capture_output=True,
                         text=True, timeout=120)
    assert off.returncode != 0 and "--ssl-cert" in off.stderr and "--insecure" in off.stderr, off.stderr
    short = subprocess.run([*base, "--code", "abcd", "--port", str(ht.free_port())], capture_output=True,
                           text=True, timeout=120)
    assert short.returncode != 0 and "8 characters" in short.stderr, short.stderr
    assert not (hub.prefix / "state-refused").exists()
    shown = hub.out.read_text()
    password = hub.password(hub.admin)
    assert password not in shown and "instructor-" in shown, shown
    f = hub.state / f"instructor-{unix_name(hub.admin)}.txt"
    assert (os.stat(f).st_mode & 0o777) == 0o600 and os.stat(f).st_uid == 0


# the end of the workshop -----------------------------------------------------------------------


def test_zz_the_end_archives_and_removes_the_accounts(hub, pair):
    users = [u for u in hub.users if has_account(u)]
    assert hub.stop() == 0, hub.log()
    dest = hub.prefix / f"archive-{os.urandom(3).hex()}"
    res = ht.labkit_hub(hub, "end", "--archive", str(dest))
    assert res.returncode == 0, res.stdout + res.stderr
    for user in users:
        assert not has_account(user), f"{user} still has an account"
        archive = dest / f"{user}.tar.gz"
        assert archive.exists() and (os.stat(archive).st_mode & 0o777) == 0o600, res.stdout
    with tarfile.open(dest / f"{pair[0].name}.tar.gz") as tar:
        assert any(n.endswith("01_first_storage.ipynb") for n in tar.getnames())
    assert not (hub.state / "jupyterhub.sqlite").exists() and not list(hub.state.glob("passwords.dbm*"))
    assert not list((hub.state / "homes").glob("*.img")) if (hub.state / "homes").exists() else True
