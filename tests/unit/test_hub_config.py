"""The hub's configuration as JupyterHub reads it: the file labkit hub start writes, run as JupyterHub runs it."""

import pytest

from labkit.hub import cgroups
from labkit.hub.config import (
    CULLER,
    CULLER_SCOPES,
    INSTRUCTOR_ROLE,
    INSTRUCTOR_SCOPES,
    Settings,
    capacity,
    default_vm_slots,
    render,
)


def load(settings):
    from traitlets.config import Config

    c = Config()
    exec(compile(render(settings), "jupyterhub_config.py", "exec"), {"c": c, "__name__": "jupyterhub_config"})
    return c


def test_the_written_config_wires_the_hub_together(tmp_path):
    s = Settings(prefix="/opt/skb-lab", state=str(tmp_path), port=8123, code="room-code", instructors=["lab-teach"],
                 memory="3G", cpus=1.5, idle_timeout=1200, vm_slots="/run/x.sock", max_servers=7, spawn_limit=2,
                 max_students=40, total_memory=20 << 30, total_cpus=1.5, disk="1G",
                 kernel_dir="/opt/skb-lab/kernel/k/out", hub_port=9001, proxy_api_port=9002)
    c = load(s)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123/"
    assert c.JupyterHub.hub_bind_url == "http://127.0.0.1:9001"
    assert c.JupyterHub.cleanup_servers is True
    assert c.JupyterHub.db_url == f"sqlite:///{tmp_path}/jupyterhub.sqlite"
    assert c.ConfigurableHTTPProxy.command == ["/opt/skb-lab/node/node_modules/.bin/configurable-http-proxy"]
    assert c.JupyterHub.authenticator_class == "labkit.hub.auth.WorkshopAuthenticator"
    assert c.WorkshopAuthenticator.code == "room-code"
    assert c.WorkshopAuthenticator.dbm_path == f"{tmp_path}/passwords.dbm"
    assert c.WorkshopAuthenticator.instructors == {"lab-teach"} and c.WorkshopAuthenticator.max_students == 40
    assert c.Authenticator.admin_users == set()  # nobody is admin: the instructors have a role
    role = next(r for r in c.JupyterHub.load_roles if r["name"] == INSTRUCTOR_ROLE)
    assert role["users"] == ["lab-teach"] and set(role["scopes"]) == set(INSTRUCTOR_SCOPES)
    assert not {"admin:users", "access:servers", "tokens", "shutdown", "admin:servers"} & set(role["scopes"])
    assert (c.JupyterHub.active_server_limit, c.JupyterHub.concurrent_spawn_limit) == (7, 2)
    assert c.JupyterHub.allow_named_servers is False and c.Spawner.disable_user_config is True
    assert (c.LabSpawner.total_memory, c.LabSpawner.total_cpus, c.LabSpawner.disk) == (20 << 30, 1.5, "1G")
    assert c.JupyterHub.spawner_class == "labkit.hub.spawner.LabSpawner"
    assert (c.Spawner.mem_limit, c.Spawner.cpu_limit) == ("3G", 1.5)
    assert c.LabSpawner.vm_slots == "/run/x.sock" and c.LabSpawner.kernel_dir.endswith("/out")
    culler = next(svc for svc in c.JupyterHub.services if svc["name"] == CULLER)
    assert "--timeout=1200" in culler["command"] and culler["command"][0] == "/opt/skb-lab/venv/bin/python"
    role = next(r for r in c.JupyterHub.load_roles if CULLER in r.get("services", []))
    assert set(role["scopes"]) == set(CULLER_SCOPES)


def test_each_server_on_its_own_origin_with_a_subdomain_host(tmp_path):
    assert not load(Settings(prefix="/opt/skb-lab", state=str(tmp_path))).JupyterHub.get("subdomain_host")
    c = load(Settings(prefix="/opt/skb-lab", state=str(tmp_path), subdomain_host="https://lab.example.org"))
    assert c.JupyterHub.subdomain_host == "https://lab.example.org"


def test_the_instructor_view_is_registered_with_its_roles(tmp_path):
    c = load(Settings(prefix="/opt/skb-lab", state=str(tmp_path)))
    names = [svc["name"] for svc in c.JupyterHub.services]
    assert "instructor" in names
    assert any("instructor" in r.get("services", []) for r in c.JupyterHub.load_roles)


@pytest.mark.parametrize("cores, gib, want", [(2, 24, (4, 1)), (16, 64, (32, 8)), (64, 256, (128, 32)),
                                              (1, 2, (1, 1)), (8, 6, (4, 4))])
def test_default_vm_cap_follows_cores_and_memory(cores, gib, want):
    assert default_vm_slots(cores, gib << 30) == want


@pytest.mark.parametrize("cores, gib, disk_gib, want", [
    (2, 24, 60, {"max_servers": 4, "spawn_limit": 2, "max_students": 26, "total_cpus": 1.5}),
    (16, 64, 500, {"max_servers": 31, "spawn_limit": 16, "max_students": 246, "total_cpus": 15.5}),
    (64, 256, 2000, {"max_servers": 127, "spawn_limit": 64, "max_students": 996, "total_cpus": 63.5}),
    (1, 2, 10, {"max_servers": 1, "spawn_limit": 1, "max_students": 1, "total_cpus": 0.5})])
def test_capacity_follows_the_machine(cores, gib, disk_gib, want):
    """2G, 1 CPU, a 2G home per student: servers bounded by memory and cores, accounts by the disk."""
    got = capacity(2 << 30, 1.0, 2 << 30, cores=cores, mem_bytes=gib << 30, free_disk=disk_gib << 30)
    assert {k: got[k] for k in want} == want
    assert got["total_memory"] == max(1 << 30, (gib - 2) << 30)
    assert got["max_servers"] * (2 << 30) <= max(got["total_memory"], 2 << 30)


def test_sizes():
    assert cgroups.parse_size("2G") == 2 << 30
    assert cgroups.parse_size("512M") == 512 << 20
    assert cgroups.parse_size("1.5g") == 3 << 29
    assert cgroups.parse_size("1000") == 1000
    with pytest.raises(ValueError):
        cgroups.parse_size("lots")
