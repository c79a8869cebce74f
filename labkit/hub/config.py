"""The hub's configuration: settings in, a jupyterhub_config.py out.

``labkit hub start`` gathers the settings (``Settings``), writes them into
``<state>/jupyterhub_config.py`` as one dict literal handed to ``apply()``,
and JupyterHub (from the install's venv) runs that file. Everything the
hub keeps (its database, cookie secret, pid files, log) is in the state
directory, mode 0700: the workshop code is in there too.

What ``apply`` wires together:

- the proxy: configurable-http-proxy from the install's ``node/`` (npm),
  its API and the hub's own API on free ports of 127.0.0.1;
- ``WorkshopAuthenticator`` (labkit.hub.auth): a password per name, the
  room's code to make a new name, its password file in the state directory;
  no ``admin_users``: the instructors get the role ``INSTRUCTOR_SCOPES``;
- ``LabSpawner`` (labkit.hub.spawner) with the memory, CPU and disk limits
  per student, the limits on all students together (the parent cgroup), the
  imported kernel and the VM slot broker (``LABKIT_VM_SLOTS``);
- capacity: ``active_server_limit`` and ``concurrent_spawn_limit`` from the
  machine's size (``capacity()``), one server per student, no user config
  (``disable_user_config``: a student's ~/.jupyter cannot change their server);
- the idle culler as a hub-managed service with the JupyterHub 5 role it
  needs (list users, read activity and servers, delete servers);
- the instructor view, when ``labkit.hub.instructor`` offers
  ``service_config(prefix_dir, state_dir)``;
- ``cleanup_servers``: stopping the hub stops every student's server.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import socket
import sys
import time
from dataclasses import dataclass, field

from labkit.hub import cgroups

CULLER = "idle-culler"
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
LOGIN_HINT = ("New here? Pick a username (letters, digits and '-', starting with a letter), choose a password "
              "(8 characters or more) and type the workshop code from the board. Coming back? Your name and "
              "your password; no code.")
INSTRUCTOR_ROLE = "skb-lab-instructor"
# What an instructor needs, and no more: the admin page, the students and their servers (start, stop),
# the instructor view. Not: access:servers (the students' servers: their code, their pages), admin:users,
# tokens, shutdown.
INSTRUCTOR_SCOPES = ["admin-ui", "list:users", "read:users", "read:users:activity", "read:servers", "servers",
                     "access:services!service=instructor"]
RESERVE = 2 << 30        # memory kept from the students for the hub and the system
DISK_RESERVE = 8 << 30   # disk kept free beside the students' homes


@dataclass
class Settings:
    prefix: str
    state: str
    ip: str = "127.0.0.1"
    port: int = 8000
    code: str = ""
    instructors: list = field(default_factory=list)   # unix names
    memory: str = "2G"
    cpus: float = 1.0
    disk: str = "2G"                 # each student's home (a filesystem image)
    max_servers: int = 0             # active_server_limit (0: from the machine)
    max_students: int = 0            # accounts (0: from the disk)
    spawn_limit: int = 0             # concurrent_spawn_limit (0: from the cores)
    total_memory: int = 0            # bytes for all students together (the parent cgroup; 0: from the machine)
    total_cpus: float = 0.0
    subdomain_host: str = ""
    idle_timeout: int = 3600
    vm_slots: str = ""               # LABKIT_VM_SLOTS
    kernel_dir: str = ""             # LABKIT_KERNEL_DIR
    snapshots: str = ""              # LABKIT_SNAPSHOTS: the shared warm snapshot ("": the VMs boot cold)
    hub_port: int = 0
    proxy_api_port: int = 0
    poll_interval: int = 10          # s between checks that a server still lives
    ssl_key: str = ""
    ssl_cert: str = ""
    default_url: str = "/lab/tree/00_index.ipynb"

    @property
    def url(self) -> str:
        host = "localhost" if self.ip in ("0.0.0.0", "") else self.ip
        return f"{'https' if self.ssl_cert else 'http'}://{host}:{self.port}/"

    def config_file(self) -> str:
        return os.path.join(self.state, "jupyterhub_config.py")


def free_port(ip="127.0.0.1", avoid=()) -> int:
    while True:
        with socket.socket() as s:
            s.bind((ip, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port


def default_vm_slots(cores=None, mem_bytes=None) -> tuple[int, int]:
    """(max running, max booting) lab VMs for this machine.

    The model: a lab VM under TCG takes a whole core while it boots and only
    for the seconds a scenario runs afterwards, and about 1 GiB of memory
    (its guest RAM as it gets touched, plus QEMU). So: one boot at a time
    per two cores, two running VMs per core, and no more VMs than fit in the
    memory left after 2 GiB for the hub and the system.
    """
    cores = cores or os.cpu_count() or 1
    mem_bytes = machine_memory() if mem_bytes is None else mem_bytes
    by_mem = max(1, (mem_bytes - RESERVE) // (1 << 30))
    return max(1, min(2 * cores, by_mem)), max(1, cores // 2)


def machine_memory() -> int:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemTotal:"))


def capacity(memory: int, cpus: float, disk: int, cores=None, mem_bytes=None, free_disk=None) -> dict:
    """What the machine can hold, for students of ``memory`` bytes, ``cpus`` CPUs and ``disk`` bytes each.

    - ``total_memory``/``total_cpus``: the parent cgroup's limits, every student together: the
      machine less ``RESERVE`` for the hub and the system, every core less half of one;
    - ``max_servers`` (active_server_limit): as many servers as fit in that memory, and no more than
      two per CPU they ask for (a TCG VM takes a core only while it boots or runs a scenario);
    - ``spawn_limit`` (concurrent_spawn_limit): one spawn per core at a time;
    - ``max_students``: accounts whose homes fit on the disk, ``DISK_RESERVE`` kept free.
    """
    cores = cores or os.cpu_count() or 1
    mem_bytes = machine_memory() if mem_bytes is None else mem_bytes
    total_memory = max(1 << 30, mem_bytes - RESERVE)
    total_cpus = max(0.5, cores - 0.5)
    servers = max(1, min(total_memory // max(memory, 1), int(2 * cores / max(cpus, 0.1))))
    students = max(1, (free_disk - DISK_RESERVE) // max(disk, 1)) if free_disk is not None else 0
    return {"total_memory": int(total_memory), "total_cpus": float(total_cpus), "max_servers": int(servers),
            "spawn_limit": max(1, cores), "max_students": int(students)}


def instructor_service(prefix: str, state: str):
    """(service entry, roles) for the instructor view, or (None, []) if labkit has none."""
    try:
        mod = importlib.import_module("labkit.hub.instructor")
    except ImportError:
        return None, []
    make = getattr(mod, "service_config", None)
    if make is None:
        return None, []
    svc = make(prefix, state)
    roles = getattr(mod, "roles", None)
    return svc, (roles(svc) if callable(roles) else list(getattr(mod, "ROLES", [])))


def render(s: Settings) -> str:
    """The text of jupyterhub_config.py for these settings."""
    body = ",\n".join(f"    {f.name!r}: {getattr(s, f.name)!r}" for f in dataclasses.fields(s))
    return (f"# Written by `labkit hub start` at {time.strftime('%Y-%m-%d %H:%M:%S')}; rewritten at each start.\n"
            "# The settings are labkit.hub.config.Settings; apply() turns them into JupyterHub's.\n"
            "from labkit.hub.config import Settings, apply\n\n"
            f"apply(c, Settings(**{{\n{body},\n}}))\n")


def apply(c, s: Settings):
    """Set JupyterHub's configuration ``c`` from the settings."""
    venv_bin = os.path.join(s.prefix, "venv", "bin")
    state = s.state
    scheme = "https" if s.ssl_cert else "http"

    c.JupyterHub.bind_url = f"{scheme}://{s.ip}:{s.port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{s.hub_port}"
    if s.ssl_cert:
        c.JupyterHub.ssl_cert = s.ssl_cert
        c.JupyterHub.ssl_key = s.ssl_key
    c.JupyterHub.db_url = f"sqlite:///{os.path.join(state, 'jupyterhub.sqlite')}"
    c.JupyterHub.cookie_secret_file = os.path.join(state, "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = os.path.join(state, "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
    c.JupyterHub.template_vars = {"announcement_login": LOGIN_HINT}
    if s.subdomain_host:  # each student's server (and the services) on its own origin
        c.JupyterHub.subdomain_host = s.subdomain_host
    c.JupyterHub.active_server_limit = int(s.max_servers)
    c.JupyterHub.concurrent_spawn_limit = int(s.spawn_limit)
    c.JupyterHub.allow_named_servers = False

    c.ConfigurableHTTPProxy.command = [os.path.join(s.prefix, "node", "node_modules", ".bin",
                                                    "configurable-http-proxy")]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = os.path.join(state, "proxy.pid")

    c.JupyterHub.authenticator_class = "labkit.hub.auth.WorkshopAuthenticator"
    c.WorkshopAuthenticator.code = s.code
    c.WorkshopAuthenticator.dbm_path = os.path.join(state, "passwords.dbm")
    c.WorkshopAuthenticator.instructors = set(s.instructors)
    c.WorkshopAuthenticator.max_students = int(s.max_students)
    c.Authenticator.admin_users = set()

    c.JupyterHub.spawner_class = "labkit.hub.spawner.LabSpawner"
    c.LabSpawner.prefix = s.prefix
    c.LabSpawner.kernel_dir = s.kernel_dir
    c.LabSpawner.vm_slots = s.vm_slots
    c.LabSpawner.snapshots = s.snapshots
    c.LabSpawner.state = state
    c.LabSpawner.disk = s.disk
    c.LabSpawner.total_memory = int(s.total_memory)
    c.LabSpawner.total_cpus = float(s.total_cpus)
    c.LabSpawner.total_pids = cgroups.PIDS_MAX * max(1, int(s.max_servers))
    c.Spawner.disable_user_config = True
    c.Spawner.mem_limit = s.memory
    c.Spawner.cpu_limit = float(s.cpus)
    c.Spawner.default_url = s.default_url
    c.Spawner.poll_interval = s.poll_interval
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 90

    roles = [{"name": "skb-lab-idle-culler", "scopes": CULLER_SCOPES, "services": [CULLER]},
             {"name": INSTRUCTOR_ROLE, "description": "the workshop's instructors: students, servers, the view",
              "scopes": list(INSTRUCTOR_SCOPES), "users": list(s.instructors)}]
    services = [{"name": CULLER, "command": [os.path.join(venv_bin, "python"), "-m", "jupyterhub_idle_culler",
                                             f"--timeout={int(s.idle_timeout)}"]}]
    svc, svc_roles = instructor_service(s.prefix, state)
    if svc:
        services.append(svc)
        roles.extend(svc_roles)
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def hub_env(prefix: str) -> dict:
    """The environment the hub process runs in: the install first on PATH, nothing of the caller's venv."""
    path = [os.path.join(prefix, "venv", "bin"), os.path.join(prefix, "node", "node_modules", ".bin"),
            "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    env = {k: v for k, v in os.environ.items()
           if k in ("LANG", "LC_ALL", "TZ", "TERM", "HOME") or k.startswith("LABKIT_HUB_")}
    env["PATH"] = os.pathsep.join(path)
    env.setdefault("LANG", "C.UTF-8")
    return env


if __name__ == "__main__":  # print the config that these defaults would give
    sys.stdout.write(render(Settings(prefix="/opt/skb-lab", state="/opt/skb-lab/state")))
