"""Make a warm snapshot of the lab VM (``labkit.vm.snapshot`` says what one is).

1. list the files the guest's warm Python and agent load (``warm_files``);
2. boot the lab kernel with ``labkit/guest/warm-init``, which copies them
   into a tmpfs and makes it the root;
3. have the agent start the warm Python (``zygote``) and then ``settle``
   (the old 9p root unmounted, the free memory zeroed);
4. save the machine through QEMU's monitor (``migrate`` to a file) and quit.

Everything is written in a folder of its own next to the snapshot's and
renamed into place at the end, under a lock: a reader never sees half a
snapshot, and a build that is killed leaves nothing (its guard removes the
folder; the next build sweeps one a power cut left).
"""

import base64
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from labkit import paths
from labkit.errors import VMError
from labkit.progress import Progress
from labkit.vm import snapshot as snap
from labkit.vm.channel import Channel, connect
from labkit.vm.guestenv import guest_env, guest_python
from labkit.vm.qemu import Guard, cmdline_path, console_tail, die_with_parent, host_tsc_khz, kernel_append, qemu_argv

STEP_TIMEOUT = 300.0


def machine(vmlinux: Path, *, accel, cpus, memory, python, files="/FILES", work="/WORK", rundir="/RUN", tsc_khz=0):
    """(argv, append) of a snapshot's build: with the default placeholders, the
    template its key is made of."""
    append = kernel_append(vmlinux, python=python, workdir=Path(work), init=snap.WARM_INIT,
                           extra=[f"labkit.files={cmdline_path(files)}"], tsc_khz=tsc_khz)
    argv = qemu_argv(vmlinux, Path(rundir), accel=accel, cpus=cpus, memory=memory, python=python,
                     workdir=Path(work), append=append)
    return argv, append


def key_for(kernel_dir: Path, vmlinux: Path, *, accel, cpus, memory) -> str:
    python = guest_python()
    argv, _ = machine(vmlinux, accel=accel, cpus=cpus, memory=memory, python=python)
    return snap.machine_key(argv, kernel_dir, vmlinux, python)


@contextmanager
def locked(path: Path, on_wait=None):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _Qmp:
    """Just enough of QEMU's monitor protocol to save the machine."""

    def __init__(self, path, deadline, alive):
        self.sock = connect(path, deadline, alive)
        if self.sock is None:
            raise VMError("QEMU's monitor did not open")
        self.file = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while True:
            line = self.file.readline()
            if not line:
                raise VMError("QEMU's monitor closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def execute(self, cmd, **args):
        self.file.write(json.dumps({"execute": cmd, "arguments": args}).encode() + b"\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise VMError(f"QEMU refused {cmd}: {reply['error'].get('desc')}")
        return reply.get("return")

    def close(self):
        self.sock.close()


def _sweep(root: Path, key: str):
    """Half-written builds of key (a build killed where its guard could not run),
    and the snapshots of other machines that are stale (a file they loaded changed)."""
    for d in root.glob(f"{key}.tmp-*"):
        shutil.rmtree(d, ignore_errors=True)
    (root / f"{key}.failed").unlink(missing_ok=True)
    for manifest in root.glob("*/manifest.json"):
        other = manifest.parent.name
        if other != key and "." not in other and snap.load(other)[0] is None:
            shutil.rmtree(manifest.parent, ignore_errors=True)


def build(kernel_dir: Path, vmlinux: Path, *, accel, cpus, memory, release=None, progress=None):
    """Make (or wait for another process to make) the snapshot for this machine."""
    progress = progress or Progress()
    key = key_for(kernel_dir, vmlinux, accel=accel, cpus=cpus, memory=memory)
    root = snap.snapshots_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = locked(root / f"{key}.lock", lambda: progress.step(
            "snapshot", "waiting for another lab VM start, which is making the warm snapshot"))
    except OSError as exc:
        raise VMError(f"cannot write warm snapshots in {root}: {exc.strerror}",
                      fix="set LABKIT_SNAPSHOTS to a folder you can write, or use Lab(snapshot=False)") from None
    with lock:
        found, _ = snap.load(key)
        if found:
            return found
        _sweep(root, key)
        t0 = time.monotonic()
        progress.step("snapshot", f"saving a warm lab VM for {release or kernel_dir.name} (once per kernel "
                      "and Python environment; later starts restore it in about a second)")
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.tmp-", dir=root))
        rundir = Path(tempfile.mkdtemp(prefix="build-", dir=paths.run_dir()))
        proc = guard = None
        files = []
        try:
            python, env = guest_python(), guest_env()
            files = snap.warm_files(python, env, vmlinux)
            if os.environ.get("LABKIT_SNAPSHOTS"):  # shared: every user who restores it gets these files' bytes
                private = [f for f in files if os.path.isfile(f) and not os.stat(f).st_mode & 0o004]
                if private:
                    raise VMError(f"a shared warm snapshot would hold {len(private)} file(s) not every user may "
                                  f"read, e.g. {private[0]}", fix="use a Python environment every user can read "
                                  "(labkit hub setup makes one), or a snapshots folder of your own",
                                  details="\n".join(private[:50]))
            (tmp / "files.list").write_text("".join(f.lstrip("/") + "\n" for f in files if f != str(vmlinux)))
            (tmp / "work").mkdir()
            tsc = host_tsc_khz() if accel != "kvm" else 0
            argv, append = machine(vmlinux, accel=accel, cpus=cpus, memory=memory, python=python,
                                   files=tmp / "files.list", work=tmp / "work", rundir=rundir, tsc_khz=tsc)
            argv += ["-qmp", f"unix:{rundir / 'qmp.sock'},server=on,wait=off"]
            progress.note(f"booting with {len(files)} files in its own root")
            with open(rundir / "qemu.log", "wb") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=die_with_parent, start_new_session=True)
            guard = Guard(proc.pid, rundir, tmp)
            info = _prepare(proc, rundir, python, env, progress)
            progress.note("saving the machine")
            state = tmp / "state"
            qmp = _Qmp(rundir / "qmp.sock", time.monotonic() + 30, lambda: proc.poll() is None)
            try:
                qmp.execute("migrate", uri=f"exec:cat > {shlex.quote(str(state))}")
                while True:
                    status = (qmp.execute("query-migrate") or {}).get("status")
                    if status == "completed":
                        break
                    if status in ("failed", "cancelled") or proc.poll() is not None:
                        raise VMError(f"QEMU could not save the machine (migration {status})")
                    time.sleep(0.05)
                qmp.execute("quit")
            finally:
                qmp.close()
            proc.wait(timeout=30)
            dirs = snap.env_dirs()
            manifest = {"format": snap.FORMAT, "key": key, "files": files, "fingerprint": snap.fingerprint(files, dirs),
                        "env_dirs": dirs,
                        "append": append, "tsc_khz": tsc, "release": release, "accel": accel, "cpus": cpus,
                        "memory": memory, "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "seconds": round(time.monotonic() - t0, 1), "state_bytes": state.stat().st_size, **info}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            for p in tmp.iterdir():
                p.chmod(0o755 if p.is_dir() else 0o644)
            tmp.chmod(0o755)
            final = root / key
            if final.exists():
                old = root / f"{key}.tmp-old-{os.getpid()}"
                final.rename(old)
                shutil.rmtree(old, ignore_errors=True)
            tmp.rename(final)
        except BaseException as exc:
            details = console_tail(rundir)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, VMError):
                exc.details = "\n".join(x for x in [exc.details, "console:", details] if x)
                snap.record_failure(key, exc.message, files)
            raise
        finally:
            if guard is not None:
                guard.release()
            shutil.rmtree(rundir, ignore_errors=True)
        progress.done("snapshot", time.monotonic() - t0)
        found, why = snap.load(key)
        if not found:
            raise VMError(f"the warm snapshot just made does not load: {why}")
        return found


def _prepare(proc, rundir, python, env, progress) -> dict:
    """Boot to the agent, start the warm Python, settle: what the guest said."""
    deadline = time.monotonic() + STEP_TIMEOUT
    sock = connect(rundir / "ctl.sock", deadline, lambda: proc.poll() is None)
    if sock is None:
        raise VMError("the warm lab VM did not open its control socket")
    chan = Channel(sock)
    info = {}
    try:
        _wait(chan, proc, deadline, lambda m: m.get("ev") == "ready", "booting")
        progress.note("loading the warm Python (the scenario worker's imports)")
        # Only what shapes its imports: every restore of a shared snapshot carries this environment.
        keep = ("PATH", "HOME", "LANG", "LABKIT_GUEST", "LABKIT_BPF_BUILD", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH",
                "VIRTUAL_ENV")
        chan.send({"op": "zygote", "argv": [python, "-u", "-m", "labkit.runtime.zygote"], "cwd": str(paths.PROJECT),
                   "env": {k: v for k, v in env.items() if k in keep}})
        done = _wait(chan, proc, deadline, lambda m: m.get("op") == "zygote", "loading the warm Python")
        info["modules"] = done.get("modules")
        chan.send({"op": "settle"})
        done = _wait(chan, proc, deadline, lambda m: m.get("op") == "settle", "settling")
        info["guest_mem_used_kb"] = done.get("mem_used_kb")
    finally:
        chan.close()
    return info


def _wait(chan, proc, deadline, match, what):
    while time.monotonic() < deadline:
        try:
            msg = chan.recv(0.5)
        except EOFError:
            msg = None
        if msg and match(msg):
            if msg.get("ev") == "done" and not msg.get("ok"):
                raise VMError(f"the warm lab VM failed {what}: {msg.get('error')}")
            return msg
        if proc.poll() is not None:
            raise VMError(f"the warm lab VM stopped while {what}")
    raise VMError(f"the warm lab VM did not finish {what} within {STEP_TIMEOUT:.0f}s")


def resume_message(workdir, binds) -> dict:
    """What the host tells a restored guest: the time, fresh randomness, its folders."""
    return {"op": "resume", "time": time.time_ns(), "seed": base64.b64encode(os.urandom(64)).decode(),
            "work": str(workdir), "bind": [str(b) for b in binds]}
