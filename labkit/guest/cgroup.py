"""A cgroup v2 directory the lab owns (``/sys/fs/cgroup/lk-*``).

cgroup_skb and sock_ops programs attach to a cgroup and see the sockets
created by its members; ``member()`` puts this process in it for a while.

Removing one always works, however the run that made it ended: a process
interrupted inside ``member()`` leaves the cgroup first, and anything else
still in it (only lab helpers run there, such as the child pyroute2 forks
to open a socket in a namespace) is killed before the ``rmdir``.
"""

import os
import secrets
import time
from contextlib import contextmanager

ROOT = "/sys/fs/cgroup"


class Cgroup:
    def __init__(self, name=None):
        self.name = name or f"lk-{secrets.token_hex(3)}"
        self.path = os.path.join(ROOT, self.name)

    def __enter__(self):
        try:
            os.mkdir(self.path)
        except BaseException:  # a Ctrl-C right after the mkdir must not leave it behind
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        remove(self.path)

    @contextmanager
    def member(self):
        """This process is in the cgroup for the with block."""
        _write(os.path.join(self.path, "cgroup.procs"), os.getpid())
        try:
            yield self
        finally:
            _write(os.path.join(ROOT, "cgroup.procs"), os.getpid())


def _write(path, value):
    with open(path, "w") as fh:
        fh.write(str(value))


def _populated(path):
    with open(os.path.join(path, "cgroup.events")) as fh:
        return "populated 1" in fh.read()


def remove(path, timeout=5.0):
    """Empty the cgroup at ``path`` and remove it; no error if it is gone."""
    if not os.path.isdir(path):
        return
    name = "/" + os.path.relpath(path, ROOT)
    with open("/proc/self/cgroup") as fh:
        if any(line.strip().split(":", 2)[-1] == name for line in fh):
            _write(os.path.join(ROOT, "cgroup.procs"), os.getpid())
    deadline = time.monotonic() + timeout
    killed = False
    while True:
        try:
            if _populated(path) and not killed:
                _write(os.path.join(path, "cgroup.kill"), 1)
                killed = True
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise OSError(exc.errno, f"could not remove cgroup {path} within {timeout:g}s "
                              f"(processes still in it: {_procs(path)})") from None
            time.sleep(0.01)


def _procs(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            return fh.read().split() or "none"
    except OSError:
        return "unknown"


def lab_cgroups():
    try:
        return sorted(n for n in os.listdir(ROOT) if n.startswith("lk-"))
    except FileNotFoundError:
        return []
