"""``labkit hub start|stop|status``: run JupyterHub from the install, and stop it leaving nothing.

``start`` runs in the foreground: it sweeps what a crashed earlier run of
this hub left (its students' cgroups and VMs, a stray proxy), writes the
configuration, makes the VM slot directory, starts JupyterHub (its own
session, its log in ``<state>/jupyterhub.log``), waits until it answers and
prints the URL and the workshop code. Ctrl-C or SIGTERM stops JupyterHub,
which stops every student's server (each stop kills the student's cgroup
and runs ``labkit cleanup`` as them) and the proxy; then ``start`` sweeps
once more and removes its pid file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from labkit.course.jupyter import wait_ready
from labkit.errors import LabError
from labkit.hub import cgroups
from labkit.hub.auth import unix_name
from labkit.hub.config import Settings, default_vm_slots, free_port, hub_env, render
from labkit.hub.setup import installed

SLOTS_DIR = "/run/skb-lab-hub/slots"
PID_FILE = "labkit-hub.pid"
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 180.0
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off a projector


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
    res = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                          str(prefix / "venv" / "bin" / "labkit"), "cleanup"],
                         capture_output=True, text=True, cwd=pw.pw_dir, timeout=120,
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


def _terminated(*_):
    raise KeyboardInterrupt


def start(prefix, state=None, ip="127.0.0.1", port=8000, code=None, admins=(), max_vms=None, memory="2G",
          cpus=1.0, idle_timeout=3600, ssl_key="", ssl_cert="", out=sys.stdout) -> int:
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
        cgroups.parse_size(memory)
        float(cpus)
    except ValueError:
        raise LabError(f"--memory {memory!r} or --cpus {cpus!r} is not a size or a number",
                       fix="e.g. --memory 2G --cpus 1.0") from None
    if code is not None and (len(code) < 4 or any(ch.isspace() for ch in code)):
        raise LabError("the workshop code must be 4 characters or more, without spaces", fix="pass another --code")
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
    proc = None
    signal.signal(signal.SIGTERM, _terminated)
    try:
        stop_orphan(st, say)
        sweep(prefix, st, say)
        running, booting = (max_vms, max(1, min(max_vms, default_vm_slots()[1]))) if max_vms else default_vm_slots()
        slots = f"{SLOTS_DIR}:{running}:{booting}"
        from labkit.vm import slots as vm_slots

        Path(SLOTS_DIR).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(Path(SLOTS_DIR).parent, 0o755)
        vm_slots.prepare(slots)
        s = Settings(prefix=str(prefix), state=str(st), ip=ip, port=int(port), code=code or make_code(),
                     admin_code=make_code(3) if admins else "", admins=[unix_name(a) for a in admins],
                     memory=memory, cpus=float(cpus), idle_timeout=int(idle_timeout), vm_slots=slots,
                     kernel_dir=info["kernel_dir"], ssl_key=ssl_key, ssl_cert=ssl_cert)
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
    admins = ", ".join(s.admins)
    lines = [f"JupyterHub for the skb storage lab is ready ({took:.1f} s).", "",
             f"    students open:  {s.url}",
             f"    workshop code:  {s.code}      (any username, the code as password)"]
    if s.admins:
        lines.append(f"    admin:          {admins}, admin code {s.admin_code}  (keep it to yourself)")
    if s.ip == "127.0.0.1":
        lines.append("    (serving 127.0.0.1 only: --ip 0.0.0.0 for the room, behind TLS or with --ssl-cert)")
    lines += ["",
              f"per student: {s.memory} memory, {s.cpus:g} CPU ({layout.describe()}); servers idle for "
              f"{s.idle_timeout} s are stopped; lab VMs: {running} running, {booting} booting at once",
              f"log: {log}", "Ctrl-C stops the hub and every student's server."]
    return "\n".join(lines)


def stop(prefix, state=None, timeout=STOP_TIMEOUT) -> bool:
    """Stop a hub started by `labkit hub start` (SIGTERM to it); False if none ran."""
    st = Path(state or os.path.join(prefix, "state")).absolute()
    pid = _read_pid(st / PID_FILE)
    if not pid or not _alive(pid):
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
    pid = _read_pid(st / PID_FILE)
    up = bool(pid and _alive(pid))
    lines = [f"hub: {'running, pid ' + str(pid) if up else 'stopped'}; {info['url']} (state {st})",
             f"limits: {info['memory']} memory, {info['cpus']:g} CPU per student; cgroup {info['cgroup']}: "
             f"{info['cgroup_why']}", f"lab VM slots: {info['vm_slots']}"]
    layout = cgroups.detect()
    if layout is not None:
        for user in cgroups.existing(layout):
            use = cgroups.StudentCgroup(layout, user).usage()
            lines.append(f"  {user}: {use['pids']} processes, {use['memory_bytes'] / 2**20:.0f} MiB"
                         + (f", {use['oom_kills']} OOM kills" if use["oom_kills"] else ""))
    return "\n".join(lines)
