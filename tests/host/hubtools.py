"""Drive a workshop hub as the instructor and the students do, for tests and benchmarks.

    hub = start_hub(prefix, code="...")          # labkit hub start, in the background
    s = login(hub, "ana-x1")                     # over HTTP, as a browser: /hub/login, the form (a new
                                                 # name: its password, hub.password(name), and the code)
    spawn(hub, s)                                # the student's server, through the REST API
    with kernel(hub, s) as k: k.execute("...")   # code in their own kernel (labkit.hub.drive)
    stop(hub, s)                                 # their server, through the REST API
    hub.stop()                                   # SIGTERM, as Ctrl-C
    remove_users(["lab-ana-x1"])                 # userdel -r, only the names given

Everything here is real: the hub's own CLI, HTTP, the students' own processes.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from labkit.hub import cgroups

SETUP_TIMEOUT = 900
READY_TIMEOUT = 120


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_names(n, stem="t") -> list[str]:
    """n fresh student names with a random suffix (the hub makes them lab-<name>)."""
    tag = secrets.token_hex(3)
    return [f"{stem}{i}-{tag}" for i in range(n)]


def setup(prefix, kernel=None, timeout=SETUP_TIMEOUT, labkit=None):
    """labkit hub setup --prefix PREFIX: the CompletedProcess (check returncode)."""
    from tests.host.conftest import PROJECT

    exe = labkit or [str(PROJECT / ".venv" / "bin" / "labkit")]
    argv = [*exe, "hub", "setup", "--prefix", str(prefix)] + (["--kernel", str(kernel)] if kernel else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=PROJECT)


@dataclass
class Hub:
    prefix: Path
    state: Path
    port: int
    code: str
    proc: subprocess.Popen
    out: Path
    admin: str = ""       # the instructor's name as typed (--instructor)
    users: list = field(default_factory=list)   # the unix names it made for this test
    secret: str = field(default_factory=lambda: secrets.token_hex(6))

    def password(self, name) -> str:
        """The password a test student picks for a name (the instructor's: from its 0600 file)."""
        from labkit.hub.auth import unix_name

        if self.admin and unix_name(name) == unix_name(self.admin):
            return (self.state / f"instructor-{unix_name(self.admin)}.txt").read_text().strip()
        return f"pw-{unix_name(name)}-{self.secret}"

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail=4000) -> str:
        text = ""
        for p in (self.out, self.state / "jupyterhub.log"):
            try:
                text += f"--- {p}\n" + p.read_text(errors="replace")[-tail:]
            except OSError:
                pass
        return text

    def stop(self, timeout=240) -> int:
        """SIGTERM to `labkit hub start`, as Ctrl-C; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"the hub did not stop within {timeout}s\n{self.log()}")
        return self.proc.returncode


def start_hub(prefix, *, state=None, code=None, admin=None, idle_timeout=3600, memory="2G", cpus=1.0,
              max_vms=None, disk="256M", extra=()) -> Hub:
    """labkit hub start from the install, on 127.0.0.1 and a free port; returns once it serves."""
    prefix = Path(prefix)
    state = Path(state or prefix / "state")
    port = free_port()
    code = code or f"code-{secrets.token_hex(4)}"
    argv = [str(prefix / "venv" / "bin" / "labkit"), "hub", "start", "--prefix", str(prefix), "--state", str(state),
            "--port", str(port), "--code", code, "--idle-timeout", str(idle_timeout), "--memory", memory,
            "--cpus", str(cpus), "--disk", disk, *(["--instructor", admin] if admin else []),
            *(["--max-vms", str(max_vms)] if max_vms else []), *extra]
    out = Path(f"{state}.out")
    state.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    hub = Hub(prefix, state, port, code, proc, out, admin=admin or "")
    if admin:
        from labkit.hub.auth import unix_name

        hub.users.append(unix_name(admin))  # the hub makes the admin's account when it starts
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "is ready" in text:
            return hub
        if proc.poll() is not None:
            raise AssertionError(f"labkit hub start exited {proc.returncode}\n{hub.log()}")
        time.sleep(0.3)
    hub.stop()
    raise AssertionError(f"the hub did not get ready within {READY_TIMEOUT}s\n{hub.log()}")


class Student(requests.Session):
    """A logged-in browser session; .name is the hub (and unix) name, .token an API token of theirs."""
    name: str = ""
    token: str = ""

    def api(self, method, path, **kw):
        kw.setdefault("timeout", 60)
        return self.request(method, self.hub.url + "/hub/api" + path,
                            headers={"Authorization": f"token {self.token}"}, **kw)


def login(hub: Hub, name: str, password=None, code=None) -> Student:
    """Log in through the login form, as a browser does; the session holds the hub's cookies.
    password: the name's (default hub.password(name)); code: the workshop code field (default the room's)."""
    s = Student()
    s.hub = hub
    r = s.get(hub.url + "/hub/login", timeout=30)
    r.raise_for_status()
    xsrf = s.cookies.get("_xsrf")
    r = s.post(hub.url + "/hub/login?next=", data={"_xsrf": xsrf, "username": name,
                                                  "password": hub.password(name) if password is None else password,
                                                  "otp": hub.code if code is None else code},
               allow_redirects=False, timeout=60)
    if r.status_code != 302:
        error = re.search(r'class="login_error">([^<]*)<', r.text)
        raise PermissionError(f"login of {name!r} refused: HTTP {r.status_code}: {error and error.group(1)}")
    r = s.get(hub.url + "/hub/api/user", headers={"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/")},
              timeout=30)
    r.raise_for_status()
    s.name = r.json()["name"]
    if s.name not in hub.users:
        hub.users.append(s.name)
    r = s.post(hub.url + f"/hub/api/users/{s.name}/tokens", json={"note": "test", "expires_in": 7200},
               headers={"X-XSRFToken": s.cookies.get("_xsrf", path="/hub/")}, timeout=30)
    r.raise_for_status()
    s.token = r.json()["token"]
    return s


def server(student: Student) -> dict | None:
    """The student's default server as the hub sees it (None: none)."""
    r = student.api("GET", f"/users/{student.name}")
    r.raise_for_status()
    return r.json().get("servers", {}).get("")


def spawn(hub: Hub, student: Student, timeout=180) -> dict:
    """Start the student's server; returns the hub's model of it once it is ready."""
    r = student.api("POST", f"/users/{student.name}/server")
    if r.status_code not in (201, 202, 400):  # 400: already running
        raise AssertionError(f"spawn of {student.name}: HTTP {r.status_code} {r.text}\n{hub.log()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        srv = server(student)
        if srv and srv.get("ready"):
            return srv
        if srv is None and time.monotonic() > deadline - timeout + 5:
            raise AssertionError(f"{student.name}'s server went away while starting\n{hub.log()}")
        time.sleep(0.5)
    raise AssertionError(f"{student.name}'s server not ready within {timeout}s\n{hub.log()}")


def stop(hub: Hub, student: Student, timeout=120):
    """Stop the student's server through the REST API and wait until the hub says it is gone."""
    r = student.api("DELETE", f"/users/{student.name}/server")
    if r.status_code not in (202, 204):
        raise AssertionError(f"stop of {student.name}: HTTP {r.status_code} {r.text}")
    wait_gone(hub, student, timeout)


def wait_gone(hub: Hub, student: Student, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server(student) is None:
            return
        time.sleep(0.5)
    raise AssertionError(f"{student.name}'s server still there after {timeout}s\n{hub.log()}")


def kernel(hub: Hub, student: Student, cwd="", timeout=600):
    """A kernel in the student's own server (labkit.hub.drive.ServerKernel); use it as a context manager."""
    from labkit.hub.drive import ServerKernel

    return ServerKernel(f"{hub.url}/user/{student.name}/", student.token, cwd=cwd, timeout=timeout)


# -- what is on the machine ----------------------------------------------------------------


def uid_of(name) -> int:
    return pwd.getpwnam(name).pw_uid


def procs_of(uid) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose real uid is uid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            status = Path(f"/proc/{d}/status").read_text()
            ruid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            if ruid == uid:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out.append((int(d), cmd.strip()))
        except (OSError, AttributeError):
            continue
    return out


def qemus_of(uid) -> list[int]:
    return [pid for pid, cmd in procs_of(uid) if cmd and os.path.basename(cmd.split()[0]).startswith("qemu-system")]


def server_pid(uid) -> int | None:
    """The student's jupyterhub-singleuser process."""
    for pid, cmd in procs_of(uid):
        if "jupyterhub-singleuser" in cmd:
            return pid
    return None


def run_folders(name) -> list[str]:
    """The student's lab VM run folders (~/.cache/labkit/vm/run-*)."""
    base = Path(pwd.getpwnam(name).pw_dir) / ".cache" / "labkit" / "vm"
    return sorted(str(p) for p in base.glob("run-*")) if base.is_dir() else []


def cgroup_limits(name) -> dict:
    """The student's memory limit (bytes) and CPUs, as the cgroup files say."""
    layout = cgroups.detect()
    cg = cgroups.StudentCgroup(layout, name)
    m, c = cg.paths["memory"], cg.paths["cpu"]
    if layout.version == "v2":
        mem = int(Path(m, "memory.max").read_text())
        quota, period = Path(c, "cpu.max").read_text().split()
    else:
        mem = int(Path(m, "memory.limit_in_bytes").read_text())
        quota, period = Path(c, "cpu.cfs_quota_us").read_text(), Path(c, "cpu.cfs_period_us").read_text()
    return {"memory": mem, "cpus": int(quota) / int(period)}


def cgroup_usage(name) -> dict:
    return cgroups.StudentCgroup(cgroups.detect(), name).usage()


def labkit_hub(hub: Hub, *args, timeout=300) -> subprocess.CompletedProcess:
    """`labkit hub ARGS --prefix --state` of this hub, from its install."""
    return subprocess.run([str(hub.prefix / "venv" / "bin" / "labkit"), "hub", *args, "--prefix", str(hub.prefix),
                           "--state", str(hub.state)], capture_output=True, text=True, timeout=timeout)


def cgroup_left(name) -> bool:
    layout = cgroups.detect()
    return layout is not None and cgroups.StudentCgroup(layout, name).exists()


def assert_nothing_left(name, within=15):
    """No process (QEMU included), cgroup or run folder of the student is left;
    processes get `within` seconds to go."""
    uid = uid_of(name)
    # Killed processes may stay a moment as zombies until whoever inherited them reaps them.
    try:
        wait_until(lambda: not procs_of(uid), within, "")
    except AssertionError:
        raise AssertionError(f"processes of {name} left: {procs_of(uid)}") from None
    assert not cgroup_left(name), f"the cgroup of {name} is still there"
    assert not run_folders(name), f"run folders of {name} left: {run_folders(name)}"


def wait_until(cond, timeout, what, step=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout}s")


def as_user(name, argv, **kw) -> subprocess.CompletedProcess:
    """Run argv as the unix user (setpriv), with their home and groups."""
    pw = pwd.getpwnam(name)
    return subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", *argv],
                          capture_output=True, text=True, cwd=pw.pw_dir, timeout=kw.pop("timeout", 60),
                          env={"HOME": pw.pw_dir, "USER": name, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, **kw)


def remove_users(names):
    """userdel -r each of these hub-made accounts (never one the hub did not make)."""
    from labkit.hub.auth import is_hub_account

    failed = {}
    for name in names:
        err = ""
        for _ in range(20):  # another useradd/userdel may hold /etc/passwd's lock for a moment
            if not is_hub_account(name):
                break
            err = subprocess.run(["userdel", "-r", "-f", name], capture_output=True, text=True).stderr.strip()
            time.sleep(0.3)
        if is_hub_account(name):
            failed[name] = err
    assert not failed, f"could not remove test users: {failed}"
