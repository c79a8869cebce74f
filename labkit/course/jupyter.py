"""``labkit open``: JupyterLab on the lessons, with the lab VM proven to boot.

It reports what the machine can do, boots the lab VM once (each notebook
then boots its own in a few seconds), starts JupyterLab serving the
learner's own copy of the lessons (``labkit.course.workcopy``: ``~/skb-lab-notebooks``,
so autosave never writes into the checkout) and prints the URL once the
server answers. Ctrl-C stops JupyterLab; the notebooks' VMs go with their
kernels.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from labkit import paths
from labkit.errors import LabError

READY_TIMEOUT = 120.0


def free_port(start=8888, ip="127.0.0.1") -> int:
    for port in range(start, start + 50):
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return port
    raise LabError(f"no free port from {start} to {start + 49}", fix="pass --port")


def jupyter_argv(port, ip, token, root=None) -> list:
    exe = Path(sys.executable).with_name("jupyter-lab")
    if not exe.exists():
        raise LabError("JupyterLab is not installed in this environment", fix="run ./lab setup")
    argv = [str(exe), "--no-browser", f"--ServerApp.root_dir={root or paths.PROJECT / 'notebooks'}",
            f"--ServerApp.ip={ip}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return argv


def wait_ready(proc, url, log, timeout=READY_TIMEOUT, what="JupyterLab"):
    """Poll url until it answers 200; what (the server's name) failed, with its log, if proc exits first."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{what} exited with status {proc.returncode} before it served",
                           fix=f"see its log: {log}", details=Path(log).read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise LabError(f"{what} did not answer at {url} within {timeout:g}s (last: {last})",
                   fix=f"see its log: {log}")


def start(port=None, ip="127.0.0.1", token=None, root=None):
    """Start JupyterLab on root (default: the checkout's notebooks/); (process, url) once it answers."""
    root = Path(root or paths.PROJECT / "notebooks")
    token = token or secrets.token_urlsafe(24)
    port = port or free_port(ip=ip)
    log = paths.state_dir() / "jupyterlab.log"
    # The lab's own JupyterLab settings (no news pop-up over the lessons) come first.
    env = dict(os.environ)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent / "jupyter_config")] + ([env["JUPYTER_CONFIG_PATH"]]
                                                           if env.get("JUPYTER_CONFIG_PATH") else []))
    with open(log, "w") as fh:
        proc = subprocess.Popen(jupyter_argv(port, ip, token, root), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, cwd=root, start_new_session=True)
    try:
        wait_ready(proc, f"http://{ip}:{port}/api/status?token={token}", log)
    except BaseException:
        stop(proc)
        raise
    return proc, f"http://{ip}:{port}/lab/tree/00_index.ipynb?token={token}"


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _terminated(*_):
    """SIGTERM (a service manager, a test) stops JupyterLab as Ctrl-C does."""
    raise KeyboardInterrupt


def open_lab(port=None, ip="127.0.0.1", probe_vm=True, workdir=None) -> int:
    from labkit.course import workcopy
    from labkit.course.lesson import live_possible

    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, _terminated)  # from here on, SIGTERM cleans up as Ctrl-C does
    root, added = workcopy.seed(workdir)  # the learner's copy: autosave never writes into the checkout
    if added:
        print(f"your copy of the lessons: {root} ({len(added)} notebooks copied from {workcopy.source()}; "
              "files already there are never overwritten)", flush=True)
    ok, why = live_possible()
    if ok and probe_vm:
        from labkit.vm.lab import Lab

        print("starting the lab VM once to prove it works ...", flush=True)
        with Lab() as lab:
            how = "restored from its warm snapshot" if lab.warm else "booted"
            print(f"lab VM ready: kernel {lab.release}, {lab.accel} ({lab.accel_why}), {how} in "
                  f"{lab.boot_seconds:.1f} s; each notebook starts its own", flush=True)
    elif not ok:
        print(f"no lab VM here ({why}): the notebooks replay the recordings in notebooks/data/", flush=True)
    proc, url = start(port, ip, root=root)
    try:
        port = urllib.parse.urlsplit(url).port
        print(f"\nJupyterLab is ready ({time.monotonic() - t0:.1f} s), serving your copy of the lessons, {root} "
              "(your work is saved there):\n\n"
              f"    {url}\n\nOpen that URL in a browser (over SSH: ssh -L {port}:{ip}:{port} this-machine). "
              "Ctrl-C stops it.", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping JupyterLab", flush=True)
        return 0
    finally:
        stop(proc)
