"""The workshop hub on this machine: install, students' servers as their own users, and stops that leave nothing.

One install (``labkit hub setup`` into a fresh prefix) and one hub (``labkit
hub start`` on 127.0.0.1) for the module; students with random names log
in over HTTP; their lab VMs are started in their own kernels through their
own servers. A lab VM must die, and its run folder go, however its owner
goes: the server stopped through the hub, the idle culler, a kernel
restart, the server killed (as the OOM killer does), the hub stopped. The
test users are removed at the end (userdel -r), and only they.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from labkit.errors import LabError
from tests.host import hubtools as ht

pytestmark = pytest.mark.timeout(900)

START_VM = ("from labkit.vm import Lab\n"
            "lab = Lab()\n"
            "lab.start()\n"
            "print('VM', lab.pid, lab.rundir)\n")


@pytest.fixture(scope="module")
def install(hub_install):
    """The run's one workshop install (tests/host/conftest.py's hub_install)."""
    return hub_install


@pytest.fixture(scope="module")
def hub(install):
    hub = ht.start_hub(install, admin=f"teach-{os.urandom(3).hex()}")
    try:
        yield hub
    finally:
        hub.stop()
        ht.remove_users(hub.users)


@pytest.fixture(scope="module")
def students(hub):
    """Two students logged in, their servers running."""
    a, b = (ht.login(hub, n) for n in ht.test_names(2))
    for s in (a, b):
        ht.spawn(hub, s)
    return a, b


def start_vm(hub, student):
    """A kernel in the student's server with a lab VM up; (kernel, QEMU pid)."""
    k = ht.kernel(hub, student, timeout=300)
    k.start()
    res = k.execute(START_VM)
    text = "".join(o.get("text", "") for o in res["outputs"])
    assert res["status"] == "ok", f"the VM did not start in {student.name}'s kernel: {res['outputs']}"
    qemus = ht.qemus_of(ht.uid_of(student.name))
    assert qemus, f"no QEMU of {student.name} after: {text}"
    return k, qemus[0]


def close_quietly(k):
    if k.ws is not None:
        k.ws.close()
        k.ws = None
    k.loop.close()


# -- the install -----------------------------------------------------------------------------


def test_install_is_read_only_for_students(install):
    for root, dirs, files in os.walk(install):
        if Path(root) == install and "state" in dirs:
            dirs.remove("state")
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            assert st.st_uid == 0, f"{p} is not root's"
            assert os.path.islink(p) or not st.st_mode & 0o022, f"{p} is writable by others ({st.st_mode:o})"
    assert os.path.realpath(install / "venv" / "bin" / "python").startswith("/usr/bin/python3")
    assert not (install / "src" / "bpf" / "build").exists()
    assert (install / "bpf-build" / "observe.bpf.o").is_file(), "the setup compiled no BPF objects for the students"
    assert (install / "src" / "notebooks" / "01_first_storage.ipynb").is_file()
    nobody = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             str(install / "venv" / "bin" / "python"), "-c",
                             "import labkit, jupyterhub; from labkit import kernel; print(kernel.kernel_path())"],
                            capture_output=True, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                 "LABKIT_KERNEL_DIR": __import__("json").loads(
                                     (install / "setup.json").read_text())["kernel_dir"]})
    assert nobody.returncode == 0, nobody.stderr


# -- logging in ------------------------------------------------------------------------------


def test_login_needs_the_code_and_a_workshop_name(hub):
    import requests

    page = requests.get(hub.url + "/hub/login", timeout=30).text
    assert "workshop code" in page and 'name="otp"' in page
    name = ht.test_names(1, "login")[0]
    with pytest.raises(PermissionError):  # a new name needs the room's code
        ht.login(hub, name, code="wrong-code")
    with pytest.raises(PermissionError):
        ht.login(hub, "../etc")
    with pytest.raises(PermissionError):
        ht.login(hub, "9starts-with-a-digit")
    with pytest.raises(PermissionError):  # nor a password under 8 characters
        ht.login(hub, name, password="short")
    with pytest.raises(PermissionError):  # the room's code does not open the instructor's name
        ht.login(hub, hub.admin, password=hub.code)
    s = ht.login(hub, name.upper())
    assert s.name == f"lab-{name}"
    entry = __import__("pwd").getpwnam(s.name)
    assert entry.pw_gecos.startswith("skb-lab-hub") and entry.pw_uid != 0
    assert (os.stat(entry.pw_dir).st_mode & 0o777) == 0o700
    again = ht.login(hub, name, code="")  # the same name and password come back, no code needed
    assert again.name == s.name
    teacher = ht.login(hub, hub.admin, code="")
    me = teacher.api("GET", f"/users/{teacher.name}").json()
    assert me["admin"] is False and "skb-lab-instructor" in me["roles"], me
    assert teacher.api("GET", "/users").status_code == 200  # the instructor lists the students


# -- servers -----------------------------------------------------------------------------------


def test_each_server_runs_as_its_student_in_its_cgroup(hub, students):
    from labkit.hub import cgroups

    layout = cgroups.detect()
    said = ht.labkit_hub(hub, "status").stdout
    assert "hub: running" in said and f"cgroup {layout.version}" in said, said
    for s in students:
        assert f"  {s.name}: " in said, said
        limits = ht.cgroup_limits(s.name)
        assert limits == {"memory": 2 << 30, "cpus": 1.0}, limits
        uid = ht.uid_of(s.name)
        pid = ht.server_pid(uid)
        assert pid, f"no jupyterhub-singleuser process of {s.name}: {ht.procs_of(uid)}"
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert set(map(int, uids)) == {uid}, f"{s.name}'s server runs with uids {uids}"
        assert pid in cgroups.StudentCgroup(layout, s.name).pids()
        home = Path(__import__("pwd").getpwnam(s.name).pw_dir)
        lab = home / "lab"
        assert (lab / "00_index.ipynb").is_file() and (lab / "01_first_storage.ipynb").is_file()
        assert os.stat(lab / "01_first_storage.ipynb").st_uid == uid


def test_a_server_start_restores_a_spare_vm_that_the_first_lab_takes(hub, students):
    """The hub starts a student's lab VM with their server (labkit.vm.spare): their
    first lesson's Lab() takes that one, and it goes with the kernel."""
    a = students[0]
    uid = ht.uid_of(a.name)
    ht.wait_until(lambda: len(ht.qemus_of(uid)) == 1, 180, "a spare VM restored as the server started")
    spare = ht.qemus_of(uid)[0]
    k, qemu = start_vm(hub, a)
    try:
        assert qemu == spare and ht.qemus_of(uid) == [spare], "the first Lab() did not take the spare VM"
        # The shared snapshot's warm Python holds the observer, loaded from the setup's objects, which
        # the student's lessons use: before any scenario, the guest already has its programs.
        res = k.execute("import os\n"
                        "print('BPF', os.environ.get('LABKIT_BPF_BUILD'))\n"
                        "print('PROGS', lab.run(['sh', '-c', 'ls -l /proc/[0-9]*/fd 2>/dev/null'], timeout=60)"
                        ".out.count('anon_inode:bpf-prog'))\n")
        text = "".join(o.get("text", "") for o in res["outputs"])
        assert f"BPF {hub.prefix / 'bpf-build'}" in text, text
        assert int(text.split("PROGS ")[1].split()[0]) > 0, f"no observer program preloaded in the warm guest: {text}"
    finally:
        k.shutdown()
    ht.wait_until(lambda: not ht.qemus_of(uid), 60, "the spare VM gone with the kernel that took it")


def test_a_student_cannot_read_another_students_notebooks(hub, students):
    a, b = students
    b_nb = Path(__import__("pwd").getpwnam(b.name).pw_dir) / "lab" / "01_first_storage.ipynb"
    with ht.kernel(hub, a) as k:
        res = k.execute(f"import os\nprint(os.getuid())\nopen({str(b_nb)!r}).read()")
    assert any(o.get("ename") == "PermissionError" for o in res["outputs"]), res["outputs"]
    assert ht.as_user(a.name, ["cat", str(b_nb)]).returncode != 0


def test_work_persists_across_a_server_restart(hub, students):
    a = students[0]
    mine = Path(__import__("pwd").getpwnam(a.name).pw_dir) / "lab" / "01_first_storage.ipynb"
    ht.as_user(a.name, ["sh", "-c", f"echo '{{}}' > {mine}"]).check_returncode()
    ht.stop(hub, a)
    ht.spawn(hub, a)
    assert mine.read_text().strip() == "{}", "the student's notebook was overwritten by a new copy"


# -- a lab VM dies with whatever owns it ---------------------------------------------------------


def test_vm_dies_when_the_hub_stops_the_server(hub, students):
    a = students[0]
    k, qemu = start_vm(hub, a)
    from labkit.hub import cgroups

    assert qemu in cgroups.StudentCgroup(cgroups.detect(), a.name).pids(), "the student's QEMU is outside its cgroup"
    close_quietly(k)
    ht.stop(hub, a)
    ht.assert_nothing_left(a.name)


def test_vm_dies_with_a_kernel_restart(hub, students):
    b = students[1]
    k, qemu = start_vm(hub, b)
    try:
        r = k.http.post(k.base + f"api/kernels/{k.kernel_id}/restart", timeout=120)
        assert r.status_code == 200, r.text
        ht.wait_until(lambda: not ht.qemus_of(ht.uid_of(b.name)), 60, "QEMU gone after the kernel restart")
        ht.wait_until(lambda: not ht.run_folders(b.name), 30, "run folder gone after the kernel restart")
        assert ht.server(b), "the server itself should still run"
    finally:
        k.shutdown()


def test_memory_limit_covers_kernel_and_vm(hub, students):
    """Past the student's memory limit the kernel is OOM-killed in their cgroup; its VM goes with it."""
    a = students[0]
    ht.spawn(hub, a)
    k, qemu = start_vm(hub, a)
    try:
        try:  # the kernel dies under the cell: no reply comes (the server restarts the kernel)
            res = k.execute("hog = b'x' * (3 << 30)", timeout=20)
        except (LabError, TimeoutError):
            res = None
        assert res is None or res["status"] != "ok", "3 GiB fitted in a 2 GiB limit"
        ht.wait_until(lambda: ht.cgroup_usage(a.name)["oom_kills"] >= 1, 30, "an OOM kill in the cgroup")
        ht.wait_until(lambda: not ht.qemus_of(ht.uid_of(a.name)), 60, "QEMU gone with its OOM-killed kernel")
        ht.wait_until(lambda: not ht.run_folders(a.name), 30, "run folder gone with its OOM-killed kernel")
        assert ht.server(a), "the server itself should still run"
    finally:
        close_quietly(k)


def test_vm_dies_when_the_server_is_killed(hub, students):
    """SIGKILL to the server, as the OOM killer sends: the hub's poll finds it dead and cleans up."""
    b = students[1]
    k, qemu = start_vm(hub, b)
    close_quietly(k)
    os.kill(ht.server_pid(ht.uid_of(b.name)), signal.SIGKILL)
    ht.wait_gone(hub, b, timeout=90)
    ht.assert_nothing_left(b.name, within=60)


def test_idle_culler_stops_the_server_and_its_vm(install):
    hub = ht.start_hub(install, state=install / "state-cull", idle_timeout=20)
    try:
        s = ht.login(hub, ht.test_names(1, "idle")[0])
        ht.spawn(hub, s)
        k, qemu = start_vm(hub, s)
        close_quietly(k)
        ht.wait_gone(hub, s, timeout=150)
        ht.assert_nothing_left(s.name, within=60)
        log = (hub.state / "jupyterhub.log").read_text()
        assert f"DELETE /hub/api/users/{s.name}/server (idle-culler@" in log, "not stopped by the culler"
    finally:
        stopped = ht.labkit_hub(hub, "stop")
        assert stopped.stdout.strip() == "hub stopped", stopped.stdout + stopped.stderr
        hub.stop()
        ht.remove_users(hub.users)


def test_stopping_the_hub_leaves_nothing(hub, students):
    a, b = students
    ht.spawn(hub, a)
    ht.spawn(hub, b)
    k, qemu = start_vm(hub, a)
    close_quietly(k)
    proxy = int((hub.state / "proxy.pid").read_text())
    assert hub.stop() == 0, hub.log()
    for s in (a, b):
        ht.assert_nothing_left(s.name)
    for f in ("jupyterhub.pid", "proxy.pid", "labkit-hub.pid"):
        assert not (hub.state / f).exists(), f"{f} left in the state directory"
    with pytest.raises(ProcessLookupError):
        os.kill(proxy, 0)
    from labkit.hub import cgroups

    layout = cgroups.detect()
    assert not set(cgroups.existing(layout)) & set(hub.users)
