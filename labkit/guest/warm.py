"""The agent's side of a warm snapshot (``labkit.vm.snapshot`` is the host's).

Before the snapshot (``labkit/guest/warm-init`` made a tmpfs the root and
started the agent with ``--warm``): ``Zygote`` starts the warm Python
(``labkit.runtime.zygote``) and ``settle`` unmounts the old 9p root, so QEMU
can save the machine, and zeroes the free memory, so the saved state holds
only the pages in use. After a restore, ``resume`` sets the clock, reseeds
the kernel's random generator and mounts the host's folders as a cold boot
has them (the host's root read-only over every top-level folder, the working
folder writable). Imported by the agent (which runs with ``python -S``) from
this folder, before the snapshot: it costs nothing after a restore.
"""

import ctypes
import fcntl
import json
import mmap
import os
import select
import socket
import struct
import time

HOST_RO = "/run/labkit/host"
OWN = ("proc", "sys", "dev", "tmp", "run")  # the guest's own at the top of its root
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
MNT_DETACH = 2
RNDADDENTROPY, RNDRESEEDCRNG = 0x40085203, 0x5207
_libc = ctypes.CDLL(None, use_errno=True)


def mount(src, target, fstype=None, flags=0, data=None):
    enc = (lambda s: None if s is None else os.fsencode(s))
    if _libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def mount_9p(tag, target, readonly, cache):
    mount(tag, target, "9p", MS_RDONLY if readonly else 0,
          f"trans=virtio,version=9p2000.L,cache={cache},msize=262144")


class Zygote:
    """The warm Python, started from the agent with a socket to it on fd 3."""

    def __init__(self, argv, cwd, env, timeout=600):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open("/dev/null", os.O_RDWR)
                console = os.open("/dev/console", os.O_WRONLY)
                os.dup2(null, 0)
                os.dup2(console, 1)
                os.dup2(console, 2)
                os.dup2(theirs.fileno(), 3)
                os.closerange(4, 1024)
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        theirs.close()
        self.pid = pid
        self.sock = ours
        hello = self._answer(timeout)
        if not hello.get("ready"):
            raise RuntimeError(hello.get("error") or "the warm Python did not start")
        self.modules = hello.get("modules")

    def _answer(self, timeout):
        if not select.select([self.sock], [], [], timeout)[0]:
            raise RuntimeError(f"the warm Python did not answer within {timeout}s")
        data = self.sock.recv(1 << 20)
        if not data:
            raise RuntimeError("the warm Python exited (its error is on the console)")
        return json.loads(data)

    def spawn(self, module, argv, cwd, env, fds) -> int:
        """A new process running ``python -m module argv`` with stdin, stdout,
        stderr = fds; its pid (a child of PID 1)."""
        req = {"module": module, "argv": list(argv), "cwd": cwd, "env": env}
        socket.send_fds(self.sock, [json.dumps(req).encode()], list(fds))
        answer = self._answer(30)
        if "pid" not in answer:
            raise RuntimeError(answer.get("error") or "the warm Python did not fork")
        return answer["pid"]


def meminfo():
    with open("/proc/meminfo") as fh:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in fh)}


def settle() -> dict:
    """Make the machine ready to save: no 9p mounted, free memory zeroed."""
    if _libc.umount2(b"/old", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unmounting the old root: {os.strerror(err)}")
    os.rmdir("/old")
    with open("/proc/self/mountinfo") as fh:
        left = [line.split()[4] for line in fh if " - 9p " in line]
    if left:
        raise RuntimeError(f"9p still mounted at {', '.join(left)}")
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")
    # Fault in (zeroed) every free page and free it again: QEMU saves a page
    # of zeros as a flag, and the saved state shrinks to the pages in use.
    chunks, chunk = [], 16 << 20
    while meminfo()["MemFree"] > 48 * 1024:
        try:
            chunks.append(mmap.mmap(-1, chunk, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE))
        except OSError:
            break
    for m in chunks:
        m.close()
    mem = meminfo()
    return {"mem_used_kb": mem["MemTotal"] - mem["MemAvailable"]}


def reseed(seed: bytes):
    """Mix the host's random bytes into the kernel's pool and reseed its generator now."""
    fd = os.open("/dev/urandom", os.O_WRONLY)
    try:
        fcntl.ioctl(fd, RNDADDENTROPY, struct.pack("ii", len(seed) * 8, len(seed)) + seed)
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    finally:
        os.close(fd)


def resume(now_ns: int, seed: bytes):
    """After a restore: the clock, the random generator, the host's root read-only
    over every top-level folder (the agent then binds what the guest's own /tmp and
    /run hide, and calls ``mount_work``)."""
    time.clock_settime_ns(time.CLOCK_REALTIME, now_ns)
    reseed(seed)
    os.makedirs(HOST_RO, exist_ok=True)
    mount_9p("hostro", HOST_RO, readonly=True, cache="loose")
    for name in sorted(os.listdir(HOST_RO)):
        if name in OWN:
            continue
        src, dst = f"{HOST_RO}/{name}", f"/{name}"
        if os.path.islink(src):
            if not os.path.lexists(dst):
                os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src) and not os.path.islink(dst):
            os.makedirs(dst, exist_ok=True)
            mount(src, dst, flags=MS_BIND | MS_REC)
        elif os.path.isfile(src) and not os.path.lexists(dst):
            open(dst, "w").close()
            mount(src, dst, flags=MS_BIND)


def mount_work(work: str):
    """The working folder, writable, then (as a booted guest's) a root nothing can write."""
    if work:
        os.makedirs(work, exist_ok=True)
        mount_9p("work", work, readonly=False, cache="none")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY)
