"""Each student's server: their own unix user, their own notebooks, their own cgroup.

Why LocalProcessSpawner: the single-user server must run as the student's
unix account, so that the QEMU of every lab VM they start runs as them too
and its read-only view of the host shows only what that student may read
(other students' homes are 0700). SystemdSpawner would add the limits
through a transient unit, but needs systemd as PID 1; this spawner applies
them itself through a cgroup (``labkit.hub.cgroups``: v2 where the machine
has it, the v1 controllers on a hybrid machine), which works with or
without systemd. DockerSpawner would need a container runtime and an image,
and QEMU under TCG needs neither.

What a spawn does, as root in the hub, before the server runs:

- the account: made if the hub's database knows a name whose account was
  removed since, expired for PAM if an older hub made it unexpired;
- the home: on the student's own filesystem image of ``disk`` bytes
  (``labkit.hub.disk``), mounted until the hub stops;
- the student's copy of the lessons: ``~/lab`` is copied from the install's
  notebooks on the first spawn only, by a process running as the student
  (so a symlink planted in their home cannot make root write elsewhere);
  later spawns find it and their work is kept;
- the cgroup ``skb-lab-hub/<user>`` with ``mem_limit``/``cpu_limit``
  (JupyterHub's own traits), which the server joins between fork and exec,
  under ``skb-lab-hub`` limited to ``total_memory``/``total_cpus`` for every
  student together;
- between fork and exec, after joining the cgroup: a mount namespace with
  the student's own tmpfs on /tmp, /var/tmp and /dev/shm (gone with the
  server), then the student's uid;
- the environment: the install's venv first on PATH, ``LABKIT_KERNEL_DIR``
  (the imported lab kernel), ``LABKIT_BPF_BUILD`` (the setup's BPF objects),
  ``LABKIT_VM_SLOTS`` (the machine-wide VM cap), the lab's JupyterLab settings.

Whenever the server stops (from the hub, the idle culler, the hub shutting
down, or found dead by ``poll()``, e.g. OOM-killed) JupyterHub calls
``run_post_stop_hook``; there the spawner kills what is left in the cgroup
(kernels, QEMU), removes it, and runs ``labkit cleanup`` as the student,
which removes that student's own leftover run folders and nothing else,
and removes, as the student, anything of theirs in the machine's own
/tmp, /var/tmp and /dev/shm (their server never saw those; a helper run
outside it, like the seeding, might have written there).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pwd

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Float, Integer, Unicode, default

from labkit.hub import cgroups, disk
from labkit.hub.auth import create_account, expire_account, is_hub_account
from labkit.hub.setup import bpf_dir

SEED = r'''set -e
[ -e "$HOME/lab" ] && exit 0
tmp=$(mktemp -d "$HOME/.lab-seed.XXXXXX")
cp -R "$1/." "$tmp/"
chmod -R u+w "$tmp"
mv -T "$tmp" "$HOME/lab"
'''

_LAYOUT = []


def layout():
    """The machine's cgroup layout, detected once per hub process."""
    if not _LAYOUT:
        _LAYOUT.append(cgroups.detect())
    return _LAYOUT[0]


class LabSpawner(LocalProcessSpawner):
    prefix = Unicode("/opt/skb-lab", help="The install (labkit hub setup --prefix).").tag(config=True)
    kernel_dir = Unicode("", help="LABKIT_KERNEL_DIR for the students (the imported lab kernel).").tag(config=True)
    vm_slots = Unicode("", help="LABKIT_VM_SLOTS for the students: the slot broker's socket.").tag(
        config=True)
    snapshots = Unicode("", help="LABKIT_SNAPSHOTS for the students: the warm snapshot their VMs restore "
                        "(root's, read-only to them).").tag(config=True)
    cleanup_timeout = Float(60.0, help="Seconds `labkit cleanup` may take after a stop.").tag(config=True)
    state = Unicode("", help="The hub's state directory (the home images are in it).").tag(config=True)
    disk = Unicode("2G", help="Each student's home: the size of its filesystem image.").tag(config=True)
    total_memory = Integer(0, help="Bytes for every student together (0: no limit).").tag(config=True)
    total_cpus = Float(0.0, help="CPUs for every student together (0: no limit).").tag(config=True)
    total_pids = Integer(0, help="Processes and threads of every student together (0: no limit).").tag(config=True)

    _teardown_lock = None

    @default("cmd")
    def _default_cmd(self):
        return [os.path.join(self.prefix, "venv", "bin", "jupyterhub-singleuser")]

    @default("default_url")
    def _default_default_url(self):
        return "/lab/tree/00_index.ipynb"

    @property
    def cgroup(self) -> cgroups.StudentCgroup:
        return cgroups.StudentCgroup(layout(), self.user.name)

    # -- the student's account and files --

    def _pw(self):
        name = self.user.name
        if not is_hub_account(name):
            try:
                pwd.getpwnam(name)
            except KeyError:  # in the hub's database, but the account was removed since
                self.log.info("re-creating unix account %s", name)
                create_account(name)
            else:
                raise RuntimeError(f"{name} is a local account the workshop hub did not create")
        expire_account(name)
        return pwd.getpwnam(name)

    async def _as_student(self, argv, timeout, env=None):
        """Run argv as the student; (returncode, output)."""
        pw = pwd.getpwnam(self.user.name)
        base = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "LANG": "C.UTF-8",
                "PATH": self._path()}
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=pw.pw_dir, env={**base, **(env or {})}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            preexec_fn=set_user_setuid(self.user.name), start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            out, _ = await proc.communicate()
            return -9, out.decode(errors="replace") + f"\n(killed after {timeout:g}s)"
        return proc.returncode, out.decode(errors="replace")

    async def _seed_notebooks(self):
        src = os.path.join(self.prefix, "src", "notebooks")
        code, out = await self._as_student(["/bin/sh", "-c", SEED, "seed", src], timeout=120)
        if code != 0:
            raise RuntimeError(f"copying the lessons into ~/lab for {self.user.name} failed: {out.strip()}")

    def _path(self):
        return os.pathsep.join([os.path.join(self.prefix, "venv", "bin"), "/usr/local/bin", "/usr/bin", "/bin"])

    # -- the server --

    def get_env(self):
        env = super().get_env()
        env["PATH"] = self._path()
        env["LANG"] = env.get("LANG") or "C.UTF-8"
        env["JUPYTER_CONFIG_PATH"] = os.path.join(self.prefix, "src", "labkit", "jupyter_config")
        if self.kernel_dir:
            env["LABKIT_KERNEL_DIR"] = self.kernel_dir
        if self.vm_slots:
            env["LABKIT_VM_SLOTS"] = self.vm_slots
        if (bpf_dir(self.prefix) / "observe.bpf.o").exists():
            env["LABKIT_BPF_BUILD"] = str(bpf_dir(self.prefix))  # compiled by the setup, for everyone
        if self.snapshots:
            env["LABKIT_SNAPSHOTS"] = self.snapshots
            # A VM restored as the server starts, for the first lesson to take (labkit.vm.spare).
            env["LABKIT_SPARE"] = os.path.join(pwd.getpwnam(self.user.name).pw_dir, "lab")
        for key in ("VIRTUAL_ENV", "PYTHONPATH", "CONDA_ROOT", "CONDA_DEFAULT_ENV"):
            env.pop(key, None)
        return env

    def make_preexec_fn(self, name):
        join = cgroups.join_preexec(self.cgroup.procs_files())
        become = set_user_setuid(name)

        scratch = disk.private_tmp(self._scratch_size())

        def preexec():  # in the child, as root: into the cgroup, a /tmp of its own, then become the student
            join()
            scratch()
            become()
        return preexec

    def _scratch_size(self) -> int:
        """Each of the student's /tmp, /var/tmp, /dev/shm: a quarter of their memory (which it counts in)."""
        return max(64 << 20, int(self.mem_limit or cgroups.parse_size("2G")) // 4)

    async def start(self):
        if layout() is None:
            raise RuntimeError("this machine offers no cgroup with memory and cpu controllers")
        pw = await asyncio.to_thread(self._pw)
        if self.state:
            await asyncio.to_thread(disk.ensure_home, self.state, pw, cgroups.parse_size(self.disk), self.log.info)
        await self._seed_notebooks()
        self.notebook_dir = os.path.join(pw.pw_dir, "lab")
        cg = self.cgroup
        if cg.exists():  # left by a server that died while the hub was down
            await asyncio.to_thread(cg.remove)
        if self.total_memory:
            cgroups.limit_parent(layout(), self.total_memory, self.total_cpus or float(os.cpu_count() or 1),
                                 self.total_pids or cgroups.PIDS_MAX * 64)
        cg.create(int(self.mem_limit or cgroups.parse_size("2G")), float(self.cpu_limit or 1.0))
        self.log.info("%s: cgroup %s (%s), memory %s, cpus %s", self.user.name, cg.paths["memory"],
                      layout().version, self.mem_limit, self.cpu_limit)
        try:
            return await super().start()
        except BaseException:
            await asyncio.to_thread(cg.remove)
            raise

    async def poll(self):
        if self.proc is None and self.pid and layout() is not None:
            # After a hub restart only the pid is known: it is this student's
            # server only if it is still in the student's cgroup.
            if self.pid not in self.cgroup.pids():
                self.clear_state()
                return 0
        return await super().poll()

    # -- after any stop --

    async def run_post_stop_hook(self):
        try:
            await self.teardown()
        except Exception:
            self.log.exception("cleaning up after %s's server failed", self.user.name)
        res = super().run_post_stop_hook()
        if inspect.isawaitable(res):
            await res

    async def teardown(self):
        """Kill and remove the cgroup, then `labkit cleanup` as the student."""
        if self._teardown_lock is None:
            self._teardown_lock = asyncio.Lock()
        async with self._teardown_lock:
            cg = self.cgroup
            if layout() is not None and cg.exists():
                use = cg.usage()
                if use["oom_kills"]:
                    self.log.warning("%s: %d process(es) OOM-killed in its cgroup (memory limit %s)",
                                     self.user.name, use["oom_kills"], self.mem_limit)
                if use["pids"]:
                    self.log.info("%s: killing %d process(es) left in its cgroup", self.user.name, use["pids"])
                await asyncio.to_thread(cg.remove)
            try:
                pwd.getpwnam(self.user.name)
            except KeyError:
                return
            env = {k: v for k, v in self.get_env().items() if k.startswith("LABKIT_")}
            code, out = await self._as_student([os.path.join(self.prefix, "venv", "bin", "labkit"), "cleanup"],
                                               self.cleanup_timeout, env=env)
            lines = " | ".join(line for line in out.strip().splitlines() if line)
            log = self.log.info if code == 0 else self.log.warning
            log("%s: labkit cleanup (as %s) exited %s: %s", self.user.name, self.user.name, code, lines)
            uid = str(pwd.getpwnam(self.user.name).pw_uid)
            code, out = await self._as_student(["find", *disk.SCRATCH, "-xdev", "-mindepth", "1", "-user", uid,
                                                "-delete"], self.cleanup_timeout)
            if out.strip() and "Permission denied" not in out:
                self.log.info("%s: clearing their files in %s: %s", self.user.name, ", ".join(disk.SCRATCH),
                              out.strip()[-300:])
