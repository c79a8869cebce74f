"""The instructor view's data, without a hub: progress files, lab VMs by uid, the rows and the page."""

import json
import os
import pwd
import signal
import subprocess
import sys
import time

import pytest

from labkit import paths
from labkit.hub import instructor
from tests.conftest import need


def write(path, *records, raw=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(raw))
    return path


def rec(ex, passed, when, mode="live", summary="s"):
    return {"when": when, "lesson": f"{ex}_x", "exercise": ex, "check": "c", "passed": passed,
            "summary": summary, "mode": mode}


def test_the_module_imports_without_jupyterhub():
    code = "import sys, labkit.hub.instructor; assert 'jupyterhub' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=paths.PROJECT)


def test_service_entry_and_roles():
    svc = instructor.service_config("/opt/skb-lab", "/opt/skb-lab/state")
    assert svc["name"] == "instructor" and svc["oauth_no_confirm"] and svc["cwd"] == "/opt/skb-lab/state"
    assert svc["command"][:3] == ["/opt/skb-lab/venv/bin/python", "-m", "labkit.hub.instructor"]
    assert svc["url"].startswith("http://127.0.0.1:") and int(svc["url"].rsplit(":", 1)[1]) > 0
    (view,) = instructor.roles(svc)
    assert view["services"] == ["instructor"] and set(view["scopes"]) == {"list:users", "read:users", "read:servers"}
    _, extra = instructor.roles(svc, instructors=["tom"])
    assert extra == {"name": "skb-lab-instructor", "description": "may open the instructor view",
                     "scopes": ["access:services!service=instructor"], "users": ["tom"]}
    try:
        from jupyterhub.scopes import scope_definitions
    except ImportError:
        need(False, "checking the scopes against JupyterHub's needs jupyterhub",
             ".venv/bin/python -m pip install 'jupyterhub>=5,<6'")
    for scope in view["scopes"] + extra["scopes"]:
        assert scope.split("!")[0] in scope_definitions, scope


def test_latest_verdict_per_exercise(tmp_path):
    path = write(tmp_path / "p.jsonl",
                 rec("01", False, "2025-01-01T10:00:00Z"), rec("01", True, "2025-01-01T10:05:00Z"),
                 rec("01", None, "2025-01-01T10:09:00Z", mode="replay"),  # a replay later does not undo a pass
                 rec("04", None, "2025-01-01T10:07:00Z", mode="replay"),
                 raw=["not json\n", '["a list"]\n', '{"exercise": 4}\n', '{"exercise": "02", "passed": tr'])
    got = instructor.latest(instructor.read_progress(path))
    assert got["01"]["passed"] is True and got["01"]["when"] == "2025-01-01T10:05:00Z" and got["01"]["tries"] == 3
    assert got["04"]["passed"] is None and got["04"]["mode"] == "replay"
    assert set(got) == {"01", "04"}


def test_a_progress_file_must_be_the_students_own(tmp_path):
    real = write(tmp_path / "p.jsonl", rec("01", True, "2025-01-01T10:00:00Z"))
    (tmp_path / "link.jsonl").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.jsonl")
    assert instructor.read_progress(real, os.getuid())
    assert instructor.read_progress(tmp_path / "link.jsonl") == []
    assert instructor.read_progress(tmp_path / "fifo.jsonl") == []  # and no hang
    assert instructor.read_progress(tmp_path / "missing.jsonl") == []
    assert instructor.read_progress(real, os.getuid() + 1) == []


def sleeper(marker, user=None):
    """A real process whose command line looks like a lab VM's QEMU (with a marker of this test's own,
    so no other labkit run on this machine takes it for one of its VMs)."""
    preexec = None
    if user is not None:
        pw = pwd.getpwnam(user)

        def preexec():
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
    return subprocess.Popen(["/bin/sh", "-c", "sleep 60; :", "qemu-system-x86_64", "-append", f"console=ttyS0 {marker}"],
                            preexec_fn=preexec, start_new_session=True, cwd="/")


def stop(*procs):
    for p in procs:
        os.killpg(p.pid, signal.SIGKILL)  # its sleep too
        p.wait()


@pytest.fixture
def marker(tmp_path):
    return f"init={tmp_path}/guest/init"


def test_lab_vms_are_found_by_uid(marker):
    procs = [sleeper(marker)]
    if os.getuid() == 0:
        procs.append(sleeper(marker, "nobody"))
    try:
        time.sleep(0.2)
        got = instructor.lab_vms_by_uid(marker.encode())
        assert got[os.getuid()] == [procs[0].pid]
        if os.getuid() == 0:
            assert got[pwd.getpwnam("nobody").pw_uid] == [procs[1].pid]
        assert len(got) == len(procs)
    finally:
        stop(*procs)
    assert instructor.lab_vms_by_uid(marker.encode()) == {}
    assert instructor.MARKER == f"init={paths.GUEST_DIR / 'init'}".encode()  # what labkit cleanup looks for


def test_rows_for_the_hubs_users(tmp_path, marker):
    me = pwd.getpwuid(os.getuid()).pw_name
    template = str(tmp_path / "{name}" / "progress.jsonl")
    write(tmp_path / me / "progress.jsonl", rec("01", True, "2025-01-01T10:05:00Z"),
          rec("04", False, "2025-01-01T10:06:00Z", summary="<script>alert(1)</script>"))
    users = [
        {"name": me, "admin": False, "last_activity": "2025-01-01T09:00:00.123456Z",
         "servers": {"": {"ready": True, "pending": None, "last_activity": "2025-01-01T10:00:00Z"}}},
        {"name": "ghost-no-unix-account", "admin": False, "last_activity": None, "servers": {}},
        {"name": "nobody", "admin": True, "last_activity": "2025-01-01T08:00:00Z",
         "servers": {"": {"ready": False, "pending": "spawn"}}},
    ]
    proc = sleeper(marker)
    try:
        time.sleep(0.2)
        rows = instructor.students(users, template, instructor.lab_vms_by_uid(marker.encode()))
    finally:
        stop(proc)
    by = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows] == sorted(by)
    mine = by[me]
    assert mine["server"] == "running" and mine["lab_vms"] == [proc.pid] and mine["passed"] == ["01"]
    assert mine["exercises"]["04"]["passed"] is False
    assert mine["last_activity"] == "2025-01-01T10:06:00+00:00"  # the last check is the latest
    assert by["ghost-no-unix-account"] == {"name": "ghost-no-unix-account", "admin": False, "uid": None,
                                           "server": "stopped", "lab_vms": [], "exercises": {}, "passed": [],
                                           "last_activity": None}
    assert by["nobody"]["server"] == "starting" and by["nobody"]["admin"] and by["nobody"]["lab_vms"] == []

    data = {"when": "now", "exercises": ["01", "02", "04"], "students": rows}
    page = instructor.render(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<tr>") == 1 + len(rows) and "1 with a lab VM" in page
    json.dumps(data)  # what the API sends


def test_the_columns_are_every_check(tmp_path):
    assert {"01", "02", "03", "04", "05", "06", "08"} <= set(instructor.exercise_ids([]))


def test_without_a_hub_login_the_page_redirects_and_the_api_refuses(monkeypatch):
    need(_has_jupyterhub(), "the service's handlers need jupyterhub",
         ".venv/bin/python -m pip install 'jupyterhub>=5,<6'")
    import asyncio
    import threading

    from tornado.httpclient import HTTPClient, HTTPClientError
    from tornado.httpserver import HTTPServer
    from tornado.ioloop import IOLoop

    env = {"JUPYTERHUB_API_TOKEN": "t" * 32, "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
           "JUPYTERHUB_SERVICE_PREFIX": "/services/instructor/", "JUPYTERHUB_CLIENT_ID": "service-instructor",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/instructor/oauth_callback",
           "JUPYTERHUB_BASE_URL": "/", "JUPYTERHUB_HOST": "",
           "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=instructor"])}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    port = instructor._free_port()
    ready, loops = threading.Event(), []

    def serve():
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = HTTPServer(instructor.make_app())
        server.listen(port, "127.0.0.1")
        loops.append(IOLoop.current())
        ready.set()
        IOLoop.current().start()
        server.stop()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    ready.wait(10)
    client = HTTPClient()
    try:
        base = f"http://127.0.0.1:{port}/services/instructor/"
        with pytest.raises(HTTPClientError) as page:
            client.fetch(base, follow_redirects=False)
        assert page.value.code == 302 and "/hub/api/oauth2/authorize" in page.value.response.headers["Location"]
        with pytest.raises(HTTPClientError) as api:
            client.fetch(base + "api/students", follow_redirects=False)
        assert api.value.code == 403
    finally:
        client.close()
        loops[0].add_callback(loops[0].stop)
        t.join(10)


def _has_jupyterhub():
    try:
        import jupyterhub.services.auth  # noqa: F401
        return True
    except ImportError:
        return False
