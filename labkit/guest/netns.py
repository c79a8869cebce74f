"""Network namespaces the lab creates, owned by context managers.

Names carry the ``lk`` prefix so ``labkit cleanup`` can sweep leftovers
without touching anything else. ``NetNS.enter()`` switches the calling
thread into the namespace (setns) for as long as the ``with`` lasts:
sockets created inside keep that namespace after leaving it.
"""

import ctypes
import os
import secrets
import subprocess
from contextlib import contextmanager

PREFIX = "lk"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def set_netns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def sh(*argv, check=True):
    """Run an iproute2 command; raise with its stderr on failure."""
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))}: {res.stderr.strip()}")
    return res.stdout


class NetNS:
    """``ip netns add lk-...`` on enter, ``ip netns del`` on exit."""

    def __init__(self, name=None):
        self.name = name or f"{PREFIX}-{secrets.token_hex(3)}"
        if not self.name.startswith(PREFIX):
            raise ValueError(f"lab namespaces start with {PREFIX!r}: {self.name}")

    def __enter__(self):
        sh("ip", "netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        sh("ip", "netns", "del", self.name, check=False)

    def ip(self, *args):
        return sh("ip", "-n", self.name, *args)

    def run(self, *argv, check=True):
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def mac(self, dev) -> str:
        """dev's MAC address, as ip prints it."""
        return self.ip("-br", "link", "show", dev).split()[2]

    def ifindex(self, dev) -> int:
        with self.enter():
            return socket_if_nametoindex(dev)

    @contextmanager
    def enter(self):
        """Switch this thread into the namespace for the with block.

        A Ctrl-C waits while the thread switches, in and out, so it cannot
        leave the thread in the namespace after the block."""
        here = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            there = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                with interrupts_deferred():
                    set_netns(there)
                yield self
            finally:
                with interrupts_deferred():
                    set_netns(here)
                os.close(there)
        finally:
            os.close(here)


@contextmanager
def interrupts_deferred():
    """A SIGINT during the with block is acted on right after it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield  # a KeyboardInterrupt is only ever raised in the main thread
        return
    got = []
    old = signal.signal(signal.SIGINT, lambda *sig: got.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got and callable(old):
            old(*got[0])
        elif got and old == signal.SIG_DFL:
            os.kill(os.getpid(), signal.SIGINT)


def socket_if_nametoindex(dev):
    import socket

    return socket.if_nametoindex(dev)


def lab_namespaces():
    """Names of the lab's namespaces that exist now."""
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(PREFIX + "-"))
    except FileNotFoundError:
        return []
