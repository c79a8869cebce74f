"""One cgroup per student server: memory and CPU limits, and a sure kill.

Why cgroups by hand: where PID 1 is systemd, SystemdSpawner would give each
student a transient unit with MemoryMax/CPUQuota; on a machine without
systemd (containers, this build machine) there is no unit to ask for, so the
hub's spawner makes the cgroup itself. The student's single-user server is
put in it before it runs (in the child, between fork and exec), so its
kernels and the QEMU of each lab VM, all forked from it, are inside from
their first instruction: the limits cover the server, its kernels and the
student's VMs, and killing the cgroup kills all of them, whatever their
process group or session (QEMU runs in a session of its own).

Two layouts, chosen by what the machine mounts (``detect()``):

- ``v2``, the normal Debian 12 case: cgroup2 at /sys/fs/cgroup with the
  memory and cpu controllers. /sys/fs/cgroup/skb-lab-hub/<user> with
  ``memory.max`` (and ``memory.swap.max`` 0), ``cpu.max``, ``pids.max``;
  the kill is ``cgroup.kill``.
- ``v1``, a hybrid machine: the v1 controllers at /sys/fs/cgroup/<ctrl>
  (memory, cpu, pids) and a controller-less cgroup2 at
  /sys/fs/cgroup/unified. One directory skb-lab-hub/<user> in each
  hierarchy: ``memory.limit_in_bytes`` (and the memsw limit), ``cpu.cfs_quota_us``,
  ``pids.max``; the kill is the unified hierarchy's ``cgroup.kill`` when the
  kernel has it, else SIGKILL to every pid in ``cgroup.procs`` until none is
  left.

Everything is named ``skb-lab-hub``, so ``existing()`` finds what a
crashed hub left.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field

ROOT = "/sys/fs/cgroup"
PARENT = "skb-lab-hub"
PIDS_MAX = 4096  # threads too: a TCG QEMU and JupyterLab use dozens; a fork bomb stops here
CPU_PERIOD = 100_000


def _mounts():
    """{mount point: (fstype, options)} from /proc/self/mounts."""
    out = {}
    with open("/proc/self/mounts") as fh:
        for line in fh:
            dev, mnt, fstype, opts = line.split()[:4]
            out[mnt] = (fstype, set(opts.split(",")))
    return out


def _read(path, default=""):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def _write(path, value):
    with open(path, "w") as fh:
        fh.write(str(value))


@dataclass
class Layout:
    """Which cgroup interface this machine offers the hub."""
    version: str                      # "v2" or "v1"
    dirs: dict = field(default_factory=dict)   # role -> hierarchy root: memory, cpu, pids, kill
    why: str = ""

    def describe(self):
        return f"cgroup {self.version}: {self.why}"


def detect() -> Layout | None:
    """The layout to use here, or None if neither memory nor cpu can be limited."""
    mounts = _mounts()
    if mounts.get(ROOT, ("",))[0] == "cgroup2":
        have = set(_read(os.path.join(ROOT, "cgroup.controllers")).split())
        if {"memory", "cpu"} <= have:
            dirs = {"memory": ROOT, "cpu": ROOT, "kill": ROOT}
            if "pids" in have:
                dirs["pids"] = ROOT
            return Layout("v2", dirs, f"cgroup2 at {ROOT} with {' '.join(sorted(have & {'memory', 'cpu', 'pids'}))}")
        return None
    dirs = {}
    for ctrl in ("memory", "cpu", "pids"):
        for mnt, (fstype, opts) in mounts.items():
            if fstype == "cgroup" and ctrl in opts and mnt.startswith(ROOT + "/"):
                dirs.setdefault(ctrl, mnt)
    if "memory" not in dirs or "cpu" not in dirs:
        return None
    unified = os.path.join(ROOT, "unified")
    why = f"v1 controllers {', '.join(sorted(dirs))} under {ROOT}"
    if mounts.get(unified, ("",))[0] == "cgroup2":
        dirs["kill"] = unified
        why += f"; processes killed through {unified}/.../cgroup.kill" if _has_kill(unified) else \
            f"; {unified} tracks processes (no cgroup.kill: killed pid by pid)"
    else:
        why += "; processes killed pid by pid"
    return Layout("v1", dirs, why)


def _has_kill(root):
    """cgroup.kill (Linux 5.14) is in every non-root cgroup, never in the root itself."""
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return bool(m) and (int(m[1]), int(m[2])) >= (5, 14)


def parse_size(text) -> int:
    """'2G', '512M', '1500000000' -> bytes."""
    s = str(text).strip().upper().rstrip("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


class StudentCgroup:
    """skb-lab-hub/<user> in every hierarchy of the layout."""

    def __init__(self, layout: Layout, user: str):
        if not user or "/" in user or user.startswith("."):
            raise ValueError(f"bad cgroup name {user!r}")
        self.layout = layout
        self.user = user
        self.paths = {role: os.path.join(root, PARENT, user) for role, root in layout.dirs.items()}

    def _unique(self):
        return sorted(set(self.paths.values()))

    def create(self, memory_bytes: int, cpus: float):
        """Make the directories and set the limits (idempotent)."""
        _make_parent(self.layout)
        for path in self._unique():
            os.makedirs(path, exist_ok=True)
        _set_limits(self.layout, self.paths, memory_bytes, cpus, PIDS_MAX)
        m = self.paths["memory"]  # no swap: the limit is the student's memory
        if self.layout.version == "v2":
            if os.path.exists(os.path.join(m, "memory.swap.max")):
                _write(os.path.join(m, "memory.swap.max"), 0)
        elif os.path.exists(os.path.join(m, "memory.memsw.limit_in_bytes")):
            _write(os.path.join(m, "memory.memsw.limit_in_bytes"), memory_bytes)

    def procs_files(self) -> list[str]:
        """The cgroup.procs files a new member must be written to (one per hierarchy)."""
        return [os.path.join(p, "cgroup.procs") for p in self._unique()]

    def pids(self) -> list[int]:
        out = set()
        for f in self.procs_files():
            for line in _read(f).split():
                out.add(int(line))
        return sorted(out)

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self._unique())

    def usage(self) -> dict:
        """Memory in use and OOM kills so far, for the log and `labkit hub status`."""
        m = self.paths["memory"]
        if self.layout.version == "v2":
            cur = _read(os.path.join(m, "memory.current"), "0")
            events = _read(os.path.join(m, "memory.events"))
        else:
            cur = _read(os.path.join(m, "memory.usage_in_bytes"), "0")
            events = _read(os.path.join(m, "memory.oom_control"))
        ooms = 0
        for line in events.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                ooms = int(v)
        return {"memory_bytes": int(cur or 0), "oom_kills": ooms, "pids": len(self.pids())}

    def kill(self):
        """SIGKILL every process in the cgroup, including ones forking meanwhile."""
        kill_dir = self.paths.get("kill")
        if kill_dir and os.path.isfile(os.path.join(kill_dir, "cgroup.kill")):
            _write(os.path.join(kill_dir, "cgroup.kill"), 1)
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def remove(self, timeout=10.0):
        """Kill what is left, then rmdir in every hierarchy; no error if gone."""
        deadline = time.monotonic() + timeout
        while True:
            if self.pids():
                self.kill()
            busy = []
            for path in self._unique():
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:  # EBUSY until the last member is reaped
                    busy.append(path)
            if not busy:
                return
            if time.monotonic() > deadline:
                raise OSError(f"cgroup {busy[0]} still busy after {timeout:g}s: pids {self.pids()}")
            time.sleep(0.05)


def _make_parent(layout: Layout):
    """skb-lab-hub in every hierarchy; on v2 with the controllers enabled on the way down."""
    for root in sorted(set(layout.dirs.values())):
        parent = os.path.join(root, PARENT)
        os.makedirs(parent, exist_ok=True)
        if layout.version == "v2":
            # Controllers must be enabled on the way down for the leaf to have them.
            want = " ".join(f"+{c}" for c in ("memory", "cpu", "pids") if c in layout.dirs)
            for d in (root, parent):
                try:
                    _write(os.path.join(d, "cgroup.subtree_control"), want)
                except OSError as exc:
                    # EBUSY: d holds processes (a container's own root cgroup), and cgroup v2
                    # enables controllers only below a cgroup without processes of its own.
                    raise OSError(exc.errno, f"cannot enable {want} in {d}/cgroup.subtree_control "
                                             f"({exc.strerror}): its processes must move to a child "
                                             f"cgroup first") from None


def _set_limits(layout: Layout, paths: dict, memory_bytes: int, cpus: float, pids: int):
    """Memory, CPU and pids limits into the cgroup whose directory per role is ``paths``."""
    quota = max(1000, int(cpus * CPU_PERIOD))
    if layout.version == "v2":
        _write(os.path.join(paths["memory"], "memory.max"), memory_bytes)
        _write(os.path.join(paths["cpu"], "cpu.max"), f"{quota} {CPU_PERIOD}")
    else:
        _write(os.path.join(paths["memory"], "memory.limit_in_bytes"), memory_bytes)
        _write(os.path.join(paths["cpu"], "cpu.cfs_period_us"), CPU_PERIOD)
        _write(os.path.join(paths["cpu"], "cpu.cfs_quota_us"), quota)
    if "pids" in paths:
        _write(os.path.join(paths["pids"], "pids.max"), pids)


def _parent_paths(layout: Layout) -> dict:
    return {role: os.path.join(root, PARENT) for role, root in layout.dirs.items()}


def limit_parent(layout: Layout, memory_bytes: int, cpus: float, pids: int):
    """Limits on every student together (the skb-lab-hub cgroup): what no number of students
    can take from the hub and the system, however many servers they start."""
    _make_parent(layout)
    _set_limits(layout, _parent_paths(layout), memory_bytes, cpus, pids)


def parent_limits(layout: Layout) -> dict:
    """The skb-lab-hub cgroup's limits as its files say (memory bytes, CPUs, pids); None where unset."""
    parent = _parent_paths(layout)
    if layout.version == "v2":
        mem = _read(os.path.join(parent["memory"], "memory.max"))
        quota, _, period = _read(os.path.join(parent["cpu"], "cpu.max")).partition(" ")
    else:
        mem = _read(os.path.join(parent["memory"], "memory.limit_in_bytes"))
        quota = _read(os.path.join(parent["cpu"], "cpu.cfs_quota_us"))
        period = _read(os.path.join(parent["cpu"], "cpu.cfs_period_us"))
    pids = _read(os.path.join(parent.get("pids", "/nonexistent"), "pids.max"))
    return {"memory": int(mem) if mem.isdigit() else None,
            "cpus": int(quota) / int(period) if quota.lstrip("-").isdigit() and int(quota) > 0 else None,
            "pids": int(pids) if pids.isdigit() else None}


def join_preexec(procs_files):
    """A preexec step: put the forked child (before it execs) in the cgroup."""
    def join():
        pid = str(os.getpid())
        for f in procs_files:
            with open(f, "w") as fh:
                fh.write(pid)
    return join


def probe(layout: Layout):
    """Make a cgroup with limits and remove it: what every spawn will do, tried once up front."""
    cg = StudentCgroup(layout, f"probe-{os.getpid()}")
    try:
        cg.create(64 << 20, 0.1)
    finally:
        cg.remove()


def existing(layout: Layout) -> list[str]:
    """Users with a skb-lab-hub cgroup in any hierarchy."""
    names = set()
    for root in set(layout.dirs.values()):
        parent = os.path.join(root, PARENT)
        if os.path.isdir(parent):
            names.update(n for n in os.listdir(parent) if os.path.isdir(os.path.join(parent, n)))
    return sorted(names)


def remove_parents(layout: Layout):
    """rmdir skb-lab-hub in every hierarchy once no student cgroup is left in it."""
    for root in set(layout.dirs.values()):
        try:
            os.rmdir(os.path.join(root, PARENT))
        except OSError:
            pass
