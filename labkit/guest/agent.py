"""The command server inside the lab VM.

Started by ``init`` as the last step of boot, it speaks JSON lines with the
host over the virtio-serial port named ``labkit.0``:

host -> guest
    ``{"op": "run", "id": N, "argv": [...], "cwd": "/path", "env": {...}, "bind": ["/path", ...]}``
                                     bind: host folders the command needs at their own
                                     paths (read-only, unless inside the working folder)
    ``{"op": "kill", "id": N}``     kill the command's process group
    ``{"op": "input", "id": N, "data": text}``  write to the stdin of a command
                                     started with ``"stdin": true``
    ``{"op": "signal", "id": N, "sig": S}``     send signal S to the command
    ``{"op": "ping"}``               answered with ``{"ev": "pong"}``
    ``{"op": "reboot"}``             sync and stop the VM (QEMU runs with -no-reboot)
  a warm snapshot's (``--warm``, ``labkit/guest/warm.py``):
    ``{"op": "zygote", "argv": [...], "cwd": ..., "env": {...}}``  start the warm Python
    ``{"op": "settle"}``             unmount the old root, zero free memory: ready to save
    ``{"op": "resume", "time": ns, "seed": base64, "work": path, "bind": [...]}``  after a restore
    a ``run`` with ``"module": name`` (argv: python -u -m name ...) is forked by the warm
    Python when there is one
guest -> host
    ``{"ev": "ready", "release": ..., "uptime": ...}`` once, when the agent is up
    ``{"ev": "out", "id": N, "fd": 1|2, "data": base64}``
    ``{"ev": "exit", "id": N, "code": C}``   C is the exit status, 128+signal if killed
    ``{"ev": "done", "op": ..., "ok": bool, "error": ..., ...}``  after zygote, settle, resume

Guest Python is slow to start under TCG, so this file imports only what
CPython has built in and starts with ``python -S``.
"""

import binascii
import json
import os
import select
import signal
import sys
import time

HOST_RO = "/run/labkit/host"  # the host's root again, read-only (init mounts it)
# The guest's own filesystems: a host folder under them is hidden until bound.
GUEST_MOUNTS = ("/tmp", "/run", "/dev/shm")


def find_port(name="labkit.0"):
    base = "/sys/class/virtio-ports"
    for _ in range(200):
        try:
            for port in os.listdir(base):
                with open(f"{base}/{port}/name") as fh:
                    if fh.read().strip() == name:
                        return f"/dev/{port}"
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"labkit agent: no virtio port named {name}")


def unquote(text):
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] == "%" and i + 2 < len(text):
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out.extend(text[i].encode())
            i += 1
    return out.decode(errors="surrogateescape")


def boot_binds():
    """What init mounted: the folders bound at boot and the working folder."""
    done = []
    with open("/proc/cmdline") as fh:
        for arg in fh.read().split():
            if arg.startswith("labkit.bind="):
                done += [unquote(p) for p in arg[len("labkit.bind="):].split(",") if p]
            elif arg.startswith("labkit.work="):
                done.append(unquote(arg[len("labkit.work="):]))
    return done


class Agent:
    def __init__(self, port, warm=None):
        self.fd = os.open(port, os.O_RDWR)
        self.inbuf = b""
        self.procs = {}  # id -> {"pid": pid, "fds": {fd: stream}}
        self.fd_owner = {}  # child fd -> id
        self.early = {}  # pid -> wait status of a child reaped before it was known (a warm fork)
        self.warm = warm  # labkit/guest/warm.py in a snapshot VM, else None
        self.zygote = None
        self.bound = [] if warm else boot_binds()  # what init already mounted

    # -- channel ------------------------------------------------------------

    def send(self, msg):
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            data = data[n:]

    def handle(self, msg):
        op = msg.get("op")
        if op == "run":
            self.start(msg)
        elif op == "kill":
            proc = self.procs.get(msg.get("id"))
            if proc:
                try:
                    os.killpg(proc["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        elif op == "input":
            proc = self.procs.get(msg.get("id"))
            if proc and proc.get("stdin") is not None:
                data = msg.get("data", "").encode()
                try:
                    while data:
                        data = data[os.write(proc["stdin"], data):]
                except OSError:
                    pass
        elif op == "signal":
            proc = self.procs.get(msg.get("id"))
            if proc:
                try:
                    os.kill(proc["pid"], int(msg.get("sig", signal.SIGINT)))
                except ProcessLookupError:
                    pass
        elif op in ("zygote", "settle", "resume") and self.warm:
            self.warm_op(op, msg)
        elif op == "ping":
            self.send({"ev": "pong", "id": msg.get("id")})
        elif op == "reboot":
            os.sync()
            # LINUX_REBOOT_CMD_RESTART: QEMU runs with -no-reboot and exits.
            import ctypes

            ctypes.CDLL(None).reboot(0x01234567)

    def warm_op(self, op, msg):
        done = {"ev": "done", "op": op, "ok": True}
        try:
            if op == "zygote":
                self.zygote = self.warm.Zygote(msg["argv"], msg["cwd"], msg["env"])
                done["modules"] = self.zygote.modules
            elif op == "settle":
                done.update(self.warm.settle())
            else:
                seed = binascii.a2b_base64(msg["seed"])
                self.warm.resume(msg["time"], seed)
                for path in msg.get("bind", []):  # as a cold init does: the binds, then the working folder
                    self.ensure_visible(path)
                self.warm.mount_work(msg.get("work"))
                if msg.get("work"):
                    self.bound.append(msg["work"])
        except Exception as exc:  # noqa: BLE001 - the host reports it
            done.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        self.send(done)

    # -- commands -------------------------------------------------------------

    def ensure_visible(self, path):
        """Bind the host's (read-only) path where the guest's own mounts hide it."""
        path = os.path.normpath(path)
        if not path.startswith(tuple(m + "/" for m in GUEST_MOUNTS)):
            return  # the read-only root shows it already
        for b in self.bound:
            if path == b or path.startswith(b + "/"):
                return
        src = HOST_RO + path
        if not os.path.isdir(src):
            return
        if not os.path.isdir(path):
            try:
                os.makedirs(path)
            except OSError:
                return
        pid = os.fork()
        if pid == 0:
            try:
                os.execvp("mount", ["mount", "--bind", src, path])
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        if status == 0:
            self.bound.append(path)

    def start(self, msg):
        cid = msg["id"]
        for path in msg.get("bind", []):
            self.ensure_visible(path)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if msg.get("stdin") else (None, None)
        if msg.get("module") and self.zygote:
            self.start_warm(msg, (out_r, out_w, err_r, err_w, in_r, in_w))
            return
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.setsid()
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(in_r if in_r is not None else null, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (null, out_r, out_w, err_r, err_w, in_r, in_w, self.fd):
                    if fd is not None and fd > 2:
                        os.close(fd)
                os.chdir(msg.get("cwd") or "/")
                env = dict(msg.get("env") or {})
                os.execvpe(msg["argv"][0], msg["argv"], env)
            except BaseException as exc:  # noqa: BLE001 - report any exec failure
                try:
                    os.write(2, f"labkit: cannot run {msg['argv'][0]!r} in the guest: {exc}\n".encode())
                finally:
                    os._exit(127)
        self.started(cid, pid, (out_r, out_w, err_r, err_w, in_r, in_w))

    def start_warm(self, msg, pipes):
        """Have the warm Python fork ``python -m module``: it starts with its imports done."""
        out_r, out_w, err_r, err_w, in_r, in_w = pipes
        argv = msg["argv"]
        args = argv[argv.index(msg["module"]) + 1:] if msg["module"] in argv else []
        null = os.open("/dev/null", os.O_RDONLY) if in_r is None else None
        try:
            pid = self.zygote.spawn(msg["module"], args, msg.get("cwd") or "/", dict(msg.get("env") or {}),
                                    (in_r if in_r is not None else null, out_w, err_w))
        except (OSError, RuntimeError) as exc:
            os.write(err_w, f"labkit: the warm Python could not start {msg['module']}: {exc}\n".encode())
            pid = None
        finally:
            if null is not None:
                os.close(null)
        self.started(msg["id"], pid, pipes)
        if pid is None:
            self.procs[msg["id"]]["status"] = 127 << 8

    def started(self, cid, pid, pipes):
        out_r, out_w, err_r, err_w, in_r, in_w = pipes
        os.close(out_w)
        os.close(err_w)
        if in_r is not None:
            os.close(in_r)
        self.procs[cid] = {"pid": pid, "fds": {out_r: 1, err_r: 2}, "stdin": in_w}
        self.fd_owner[out_r] = cid
        self.fd_owner[err_r] = cid
        if pid in self.early:  # a warm fork that exited before its pid came back
            self.procs[cid]["status"] = self.early.pop(pid)

    def child_output(self, fd):
        cid = self.fd_owner[fd]
        proc = self.procs[cid]
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            self.send({"ev": "out", "id": cid, "fd": proc["fds"][fd],
                       "data": binascii.b2a_base64(data, newline=False).decode()})
            return
        os.close(fd)
        del self.fd_owner[fd]
        del proc["fds"][fd]
        if not proc["fds"] and proc.get("status") is None:
            # Both pipes closed but the command runs on (it redirected its
            # output): report its exit when reap_orphans() collects it.
            pid, status = os.waitpid(proc["pid"], os.WNOHANG)
            if pid == 0:
                return
            proc["status"] = status
        self.finish(cid)

    def finish(self, cid):
        proc = self.procs[cid]
        if not proc["fds"] and proc.get("status") is not None:
            status = proc["status"]
            code = os.waitstatus_to_exitcode(status)
            if code < 0:
                code = 128 - code
            if proc.get("stdin") is not None:
                os.close(proc["stdin"])
            del self.procs[cid]
            self.send({"ev": "exit", "id": cid, "code": code})

    # -- loop ---------------------------------------------------------------------

    def serve(self):
        poller = select.poll
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        self.send({"ev": "ready", "release": os.uname().release, "uptime": uptime, "pid": os.getpid()})
        while True:
            p = poller()
            p.register(self.fd, select.POLLIN)
            for fd in self.fd_owner:
                p.register(fd, select.POLLIN)
            for fd, events in p.poll(1000):
                if fd == self.fd:
                    if events & select.POLLIN:
                        try:
                            data = os.read(self.fd, 65536)
                        except OSError:
                            data = b""
                        if data:
                            self.inbuf += data
                            while b"\n" in self.inbuf:
                                line, self.inbuf = self.inbuf.split(b"\n", 1)
                                if line.strip():
                                    self.handle(json.loads(line))
                            continue
                    # POLLHUP or EOF: nobody on the host end right now.
                    self.inbuf = b""
                    time.sleep(0.05)
                else:
                    self.child_output(fd)
            self.reap_orphans()

    def reap_orphans(self):
        # The agent is PID 1: orphans of the commands end up here. A command
        # of ours reaped early keeps its status until its pipes are drained.
        try:
            while True:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                for cid, proc in list(self.procs.items()):
                    if proc["pid"] == pid:
                        proc["status"] = status
                        self.finish(cid)
                        break
                else:
                    if self.zygote:  # maybe a warm fork whose pid is not known yet
                        self.early[pid] = status
                        while len(self.early) > 64:
                            self.early.pop(next(iter(self.early)))
        except ChildProcessError:
            pass


def main():
    warm = None
    if "--warm" in sys.argv[1:]:
        import warm  # labkit/guest/warm.py, next to this file
    agent = Agent(find_port(), warm)
    try:
        agent.serve()
    except BaseException as exc:  # noqa: BLE001
        sys.stderr.write(f"labkit agent died: {exc!r}\n")
        raise


if __name__ == "__main__":
    main()
