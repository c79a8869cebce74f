"""``labkit hub start|stop|status``: run JupyterHub from the install, and stop it leaving nothing.

``start`` runs in the foreground: it sweeps what a crashed earlier run of
this hub left (its students' cgroups and VMs, a stray proxy), writes the
configuration, makes the VM slot directory, starts JupyterHub (its own
session, its log in ``<state>/jupyterhub.log``), waits until it answers and
prints the URL and the workshop code. Ctrl-C or SIGTERM stops JupyterHub,
which stops every student's server (each stop kills the student's cgroup
and runs ``labkit cleanup`` as them) and the proxy; then ``start`` sweeps
once more (unmounting the students' home images) and removes its pid file.

What it refuses: a non-loopback address without TLS (the passwords and the
room code would cross the room in clear) unless ``insecure``; a workshop
code under 8 characters. Each instructor's password is made once, kept in
``<state>/instructor-<name>.txt`` (0600, never printed) and set in the
authenticator's password file at every start.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from labkit.course.jupyter import wait_ready
from labkit.errors import LabError
from labkit.hub import cgroups, disk
from labkit.hub.auth import set_password, unix_name
from labkit.hub.config import Settings, capacity, default_vm_slots, free_port, hub_env, render
from labkit.hub.setup import installed, warm_snapshot

RUN_DIR = "/run/skb-lab-hub"  # root's, 0755: the slot brokers' sockets
PID_FILE = "labkit-hub.pid"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 180.0
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off a projector
MIN_CODE = 8
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def make_code(groups=2, size=4) -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(size)) for _ in range(groups))


def state_dir(prefix, state=None) -> Path:
    d = Path(state or os.path.join(prefix, "state")).absolute()
    d.mkdir(parents=True, exist_ok=True)
    os.chown(d, 0, 0)
    os.chmod(d, 0o700)
    return d


def _alive(pid) -> bool:
    """The process exists and has not exited (a zombie waiting for its parent has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_pid(path) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def hub_users(state: Path) -> list[str]:
    """Names in this hub's database (the students whose leftovers are this hub's to remove)."""
    db = state / "jupyterhub.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return [r[0] for r in con.execute("select name from users")]
    except sqlite3.Error:
        return []


def demote_admins(state: Path) -> list[str]:
    """Nobody is admin on this hub: clear the flag an earlier hub (--admin, /hub/admin) left in its database.
    A token of theirs has only its owner's permissions of the moment, so it loses them too."""
    db = state / "jupyterhub.sqlite"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db) as con:
            names = [r[0] for r in con.execute("select name from users where admin")]
            con.execute("update users set admin=0 where admin")
    except sqlite3.Error:
        return []
    return [f"{name} is no admin any more (instructors have a role instead)" for name in names]


def sweep(prefix: Path, state: Path, say=print) -> list[str]:
    """Remove what this hub's students and proxy left: cgroups (and all in them), run folders."""
    done = []
    layout = cgroups.detect()
    if layout is not None:
        left = set(cgroups.existing(layout)) & set(hub_users(state))
        for user in sorted(left):
            cg = cgroups.StudentCgroup(layout, user)
            n = len(cg.pids())
            cg.remove()
            done.append(f"removed the cgroup of {user} ({n} processes killed)")
            done += cleanup_as(prefix, user)
        cgroups.remove_parents(layout)
    done += disk.unmount_homes(state)
    proxy = _read_pid(state / "proxy.pid")
    if proxy and _alive(proxy) and b"configurable-http-proxy" in _cmdline(proxy):
        os.kill(proxy, signal.SIGTERM)
        done.append(f"stopped a stray proxy (pid {proxy})")
    for name in ("proxy.pid", "jupyterhub.pid"):
        pid = _read_pid(state / name)
        if pid is None or not _alive(pid):
            (state / name).unlink(missing_ok=True)
    for line in done:
        say(line)
    return done


def cleanup_as(prefix: Path, user: str) -> list[str]:
    """`labkit cleanup` as the student (their own VMs and run folders only)."""
    import pwd

    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return []
    # No terminal: stdin from /dev/null and a session of its own, so nothing run as the student can
    # reach the instructor's terminal (TIOCSTI, or ptrace of a process holding it).
    res = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                          str(prefix / "venv" / "bin" / "labkit"), "cleanup"], stdin=subprocess.DEVNULL,
                         start_new_session=True, capture_output=True, text=True, cwd=pw.pw_dir, timeout=120,
                         env={"HOME": pw.pw_dir, "USER": user, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    return [f"{user}: {line}" for line in res.stdout.splitlines() if line and line != "nothing to clean"]


def _term_with_parent():
    """In the hub's child, before exec: SIGTERM it if `labkit hub start` dies (even by SIGKILL),
    so JupyterHub still stops every server and the proxy."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_orphan(state: Path, say, timeout=STOP_TIMEOUT):
    """A JupyterHub of this state directory whose `labkit hub start` is gone: SIGTERM, and wait."""
    pid = _read_pid(state / "jupyterhub.pid")
    if not pid or not _alive(pid) or b"jupyterhub" not in _cmdline(pid):
        return
    say(f"stopping an earlier JupyterHub of {state} (pid {pid}) first")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def make_broker(st: Path, running: int, booting: int):
    """The machine-wide VM cap for this hub's students: a slot broker (root's) on a socket of its own,
    started once JupyterHub is forked (no thread of ours runs while it forks)."""
    import hashlib

    from labkit.vm.slotbroker import Broker

    Path(RUN_DIR).mkdir(parents=True, exist_ok=True)
    os.chown(RUN_DIR, 0, 0)
    os.chmod(RUN_DIR, 0o755)
    tag = hashlib.sha256(str(st).encode()).hexdigest()[:12]
    return Broker(Path(RUN_DIR) / f"slots-{tag}.sock", running, booting)


def _terminated(*_):
    raise KeyboardInterrupt


def instructor_password(st: Path, name: str) -> Path:
    """The instructor's password file (made once, 0600); its path."""
    path = st / f"instructor-{name}.txt"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(18) + "\n")
    return path


def check_transport(ip, ssl_cert, ssl_key, insecure):
    if ip not in LOOPBACK and not (ssl_cert and ssl_key) and not insecure:
        raise LabError(f"serving {ip or 'every address'} without TLS would send every password and the workshop "
                       "code across the room in clear",
                       fix="give --ssl-cert FILE --ssl-key FILE, or --insecure on a network you trust")


def start(prefix, state=None, ip="127.0.0.1", port=8000, code=None, instructors=(), max_vms=None, memory="2G",
          cpus=1.0, idle_timeout=3600, ssl_key="", ssl_cert="", insecure=False, disk_size="2G", max_servers=None,
          max_students=None, subdomain_host="", out=sys.stdout) -> int:
    if os.geteuid() != 0:
        raise LabError("the hub runs each student's server as their own user and needs root",
                       fix="run it with sudo")
    prefix = Path(prefix).absolute()
    info = installed(prefix)
    layout = cgroups.detect()
    if layout is None:
        raise LabError("this machine offers no cgroup with the memory and cpu controllers to limit students",
                       fix="boot with cgroup v2 (the Debian 12 default) or mount the v1 memory and cpu controllers")
    try:
        mem_bytes, disk_bytes = cgroups.parse_size(memory), cgroups.parse_size(disk_size)
        float(cpus)
    except ValueError:
        raise LabError(f"--memory {memory!r}, --disk {disk_size!r} or --cpus {cpus!r} is not a size or a number",
                       fix="e.g. --memory 2G --disk 2G --cpus 1.0") from None
    if disk_bytes < 32 << 20:
        raise LabError(f"--disk {disk_size} is too small for a home", fix="give 32M or more, e.g. --disk 2G")
    if code is not None and (len(code) < MIN_CODE or any(ch.isspace() for ch in code)):
        raise LabError(f"the workshop code must be {MIN_CODE} characters or more, without spaces",
                       fix="pass a longer --code, or none for a random one")
    check_transport(ip, ssl_cert, ssl_key, insecure)
    try:
        cgroups.probe(layout)
    except OSError as exc:
        raise LabError(f"cannot make a student cgroup here ({layout.describe()}): {exc}",
                       fix="run the hub on the host or in a container with its own writable cgroup tree") from None
    st = state_dir(prefix, state)
    pid_file = st / PID_FILE
    other = _read_pid(pid_file)
    if other and other != os.getpid() and _alive(other):
        raise LabError(f"a hub already runs from {st} (pid {other})", fix=f"stop it: labkit hub stop --state {st}")
    pid_file.write_text(f"{os.getpid()}\n")
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    proc = broker = None
    signal.signal(signal.SIGTERM, _terminated)
    try:
        stop_orphan(st, say)
        sweep(prefix, st, say)
        for line in demote_admins(st):
            say(line)
        running, booting = (max_vms, max(1, min(max_vms, default_vm_slots()[1]))) if max_vms else default_vm_slots()
        broker = make_broker(st, running, booting)
        slots = str(broker.path)
        snapshots = warm_snapshot(prefix, info["kernel_dir"], say)
        cap = capacity(mem_bytes, float(cpus), disk_bytes, free_disk=shutil.disk_usage(st).free)
        if float(cpus) > cap["total_cpus"]:  # a student's cgroup may not have more than all students' together
            say(f"--cpus {float(cpus):g} is more than the {cap['total_cpus']:g} CPUs all students share on this machine: "
                f"each student gets {cap['total_cpus']:g}")
            cpus = cap["total_cpus"]
        instructors = [unix_name(a) for a in instructors]
        for name in instructors:
            set_password(str(st / "passwords.dbm"), name, instructor_password(st, name).read_text().strip())
        s = Settings(prefix=str(prefix), state=str(st), ip=ip, port=int(port), code=code or make_code(),
                     instructors=instructors, memory=memory, cpus=float(cpus), disk=disk_size,
                     max_servers=int(max_servers or cap["max_servers"]),
                     max_students=int(max_students or cap["max_students"]), spawn_limit=cap["spawn_limit"],
                     total_memory=cap["total_memory"], total_cpus=cap["total_cpus"], subdomain_host=subdomain_host,
                     idle_timeout=int(idle_timeout), vm_slots=slots, kernel_dir=info["kernel_dir"], snapshots=snapshots,
                     ssl_key=ssl_key, ssl_cert=ssl_cert)
        s.hub_port = free_port()
        s.proxy_api_port = free_port(avoid={s.hub_port, s.port})
        cfg = Path(s.config_file())
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(render(s))
        status = {"pid": os.getpid(), "url": s.url, "state": str(st), "prefix": str(prefix),
                  "cgroup": layout.version, "cgroup_why": layout.why, "vm_slots": slots,
                  "memory": memory, "cpus": float(cpus), "idle_timeout": int(idle_timeout),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (st / "hub.json").write_text(json.dumps(status, indent=2) + "\n")
        log = st / "jupyterhub.log"
        with open(log, "a") as fh:
            fh.write(f"\n==== labkit hub start {status['started']}: {layout.describe()}, VM slots {slots}\n")
            fh.flush()
            proc = subprocess.Popen([str(prefix / "venv" / "bin" / "jupyterhub"), "-f", str(cfg)], cwd=st,
                                    env=hub_env(str(prefix)), stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_term_with_parent)
        broker.start()  # before any student can log in: JupyterHub is not ready yet
        t0 = time.monotonic()
        wait_ready(proc, f"http://127.0.0.1:{s.port}/hub/health" if ip in ("0.0.0.0", "127.0.0.1", "")
                   else f"{s.url}hub/health", log, timeout=READY_TIMEOUT, what="JupyterHub")
        say(banner(s, layout, running, booting, time.monotonic() - t0, log))
        return proc.wait()
    except KeyboardInterrupt:
        say("\nstopping the hub and every student's server ...")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            stop_process(proc)
        sweep(prefix, st, say)
        if broker is not None:
            broker.close()
        pid_file.unlink(missing_ok=True)
        if proc is not None:
            say("hub stopped")


def stop_process(proc, timeout=STOP_TIMEOUT):
    """SIGTERM: JupyterHub stops the servers and the proxy; SIGKILL only past the timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def banner(s: Settings, layout, running, booting, took, log) -> str:
    lines = [f"JupyterHub for the skb storage lab is ready ({took:.1f} s).", "",
             f"    students open:  {s.url}",
             f"    workshop code:  {s.code}      (a new name needs it once, with a password of the student's own)"]
    for name in s.instructors:
        lines.append(f"    instructor:     {name}, password in {Path(s.state) / f'instructor-{name}.txt'} "
                     "(sudo cat it; not shown here)")
    if s.ip in LOOPBACK:
        lines.append("    (serving this machine only: --ip 0.0.0.0 --ssl-cert FILE --ssl-key FILE for the room)")
    elif not s.ssl_cert:
        lines.append("    WARNING: no TLS (--insecure): passwords cross the network in clear")
    lines += ["",
              f"per student: {s.memory} memory, {s.cpus:g} CPU ({layout.describe()}), a {s.disk} home; servers "
              f"idle for {s.idle_timeout} s are stopped; lab VMs: {running} running, {booting} booting at once",
              f"the machine: {s.max_servers} servers at once, {s.spawn_limit} starting at once, {s.max_students} "
              f"accounts; all students together {s.total_memory / 2**30:.1f} GiB, {s.total_cpus:g} CPUs",
              f"log: {log}", "Ctrl-C stops the hub and every student's server."]
    return "\n".join(lines)


def running_pid(st: Path) -> int | None:
    """The pid of the `labkit hub start` running from this state directory, or None."""
    pid = _read_pid(Path(st) / PID_FILE)
    return pid if pid and _alive(pid) else None


def stop(prefix, state=None, timeout=STOP_TIMEOUT) -> bool:
    """Stop a hub started by `labkit hub start` (SIGTERM to it); False if none ran."""
    st = Path(state or os.path.join(prefix, "state")).absolute()
    pid = running_pid(st)
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        raise LabError(f"the hub (pid {pid}) did not stop within {timeout:g}s", fix=f"see {st / 'jupyterhub.log'}")
    return True


def status(prefix, state=None) -> str:
    st = Path(state or os.path.join(prefix, "state")).absolute()
    try:
        info = json.loads((st / "hub.json").read_text())
    except (OSError, ValueError):
        return f"no hub has run from {st}"
    pid = running_pid(st)
    lines = [f"hub: {'running, pid ' + str(pid) if pid else 'stopped'}; {info['url']} (state {st})",
             f"limits: {info['memory']} memory, {info['cpus']:g} CPU per student; cgroup {info['cgroup']}: "
             f"{info['cgroup_why']}", f"lab VM slot broker: {info['vm_slots']}"]
    layout = cgroups.detect()
    if layout is not None:
        for user in cgroups.existing(layout):
            use = cgroups.StudentCgroup(layout, user).usage()
            lines.append(f"  {user}: {use['pids']} processes, {use['memory_bytes'] / 2**20:.0f} MiB"
                         + (f", {use['oom_kills']} OOM kills" if use["oom_kills"] else ""))
    return "\n".join(lines)
