"""A cgroup v2 directory the lab owns (``/sys/fs/cgroup/lk-*``).

cgroup_skb and sock_ops programs attach to a cgroup and see the sockets
created by its members; ``member()`` puts this process in it for a while.
"""

import os
import secrets
from contextlib import contextmanager

ROOT = "/sys/fs/cgroup"


class Cgroup:
    def __init__(self, name=None):
        self.name = name or f"lk-{secrets.token_hex(3)}"
        self.path = os.path.join(ROOT, self.name)

    def __enter__(self):
        os.mkdir(self.path)
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass

    @contextmanager
    def member(self):
        """This process is in the cgroup for the with block."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
        try:
            yield self
        finally:
            with open(os.path.join(ROOT, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))


def lab_cgroups():
    try:
        return sorted(n for n in os.listdir(ROOT) if n.startswith("lk-"))
    except FileNotFoundError:
        return []
