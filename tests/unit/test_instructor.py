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
from labkit.course import exercises
from labkit.hub import instructor, progressfile
from tests.conftest import need


def write(path, *records, raw=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(raw))
    return path


def rec(ex, passed, when, mode="live", summary="s", **more):
    return {"when": when, "lesson": f"{ex}_x", "exercise": ex, "check": "c", "passed": passed,
            "summary": summary, "mode": mode, **more}


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
    records, skipped = progressfile.load(path)
    got = progressfile.latest(records)
    assert skipped == 4
    assert got["01"]["passed"] is True and got["01"]["when"] == "2025-01-01T10:05:00Z" and got["01"]["tries"] == 3
    assert got["04"]["passed"] is None and got["04"]["mode"] == "replay"
    assert set(got) == {"01", "04"}


def test_a_progress_file_must_be_the_students_own(tmp_path):
    real = write(tmp_path / "p.jsonl", rec("01", True, "2025-01-01T10:00:00Z"))
    (tmp_path / "link.jsonl").symlink_to(real)
    os.mkfifo(tmp_path / "fifo.jsonl")
    assert progressfile.load(real, os.getuid())[0]
    assert progressfile.tail(tmp_path / "link.jsonl") == []
    assert progressfile.tail(tmp_path / "fifo.jsonl") == []  # and no hang
    assert progressfile.tail(tmp_path / "missing.jsonl") == []
    assert progressfile.tail(real, os.getuid() + 1) == []


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
    # a booted VM's init and a restored one's (labkit/guest/warm-init) both carry it
    assert instructor.MARKER == f"init={paths.GUEST_DIR}/".encode()
    assert all(instructor.MARKER in f"init={paths.GUEST_DIR / name}".encode() for name in ("init", "warm-init"))


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
    assert mine["skipped"] == 0 and mine["error"] is None
    assert by["ghost-no-unix-account"] == {"name": "ghost-no-unix-account", "admin": False, "uid": None,
                                           "server": "stopped", "lab_vms": [], "exercises": {}, "passed": [],
                                           "last_activity": None, "skipped": 0, "error": None}
    assert by["nobody"]["server"] == "starting" and by["nobody"]["admin"] and by["nobody"]["lab_vms"] == []

    data = {"when": "now", "exercises": ["01", "02", "04"], "students": rows}
    page = instructor.render(data)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count("<tr>") == 1 + len(rows) and "1 with a lab VM" in page and "skipped" not in page
    json.dumps(data)  # what the API sends


def test_the_columns_are_every_check(tmp_path):
    assert {"01", "02", "03", "04", "05", "06", "08"} <= set(instructor.exercise_ids())
    assert instructor.exercise_ids() == sorted(exercises.all_checks())


# -- a progress file is the student's: whatever it holds, the page serves everyone --------------

JUNK = {  # what a student can write into their own progress file
    "a line nested 100000 deep": lambda: ["[" * 100_000 + "\n"],
    "a verdict that is not one": lambda: [json.dumps(rec("02", "boom", "2025-01-01T10:07:00Z")) + "\n"],
    "150000 made-up exercises": lambda: [f'{{"exercise": "made-up-{i}", "passed": true}}\n' for i in range(150_000)],
}


def a_class(tmp_path, junk):
    """The hub's users and the progress files' template for two students with the same two verdicts
    (01 passed, 04 not yet): me, whose file has the junk before them, and, where this test can give a
    file away (as root), nobody, whose file has nothing else."""
    me = pwd.getpwuid(os.getuid()).pw_name
    good = [rec("01", True, "2025-01-01T10:05:00Z"), rec("04", False, "2025-01-01T10:06:00Z")]
    write(tmp_path / me / "progress.jsonl", raw=[*junk, *(json.dumps(r) + "\n" for r in good)])
    users = [{"name": me, "admin": False, "last_activity": None, "servers": {}}]
    if os.getuid() == 0:
        theirs = write(tmp_path / "nobody" / "progress.jsonl", *good)
        os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)
        users.append({"name": "nobody", "admin": False, "last_activity": None, "servers": {}})
    return me, users, str(tmp_path / "{name}" / "progress.jsonl")


@pytest.mark.parametrize("kind", list(JUNK))
def test_a_poisoned_progress_file_leaves_the_page_to_everyone(tmp_path, kind):
    me, users, template = a_class(tmp_path, JUNK[kind]())
    data = instructor.report(users, template)
    page = instructor.render(data)
    assert len(page.encode()) < 200_000 and len(json.dumps(data)) < 200_000  # the page is rebuilt every 10 s
    assert data["exercises"] == sorted(exercises.all_checks())
    assert page.count("<tr>") == 1 + len(users) and page.count('<td class="ok"') == len(users)
    for row in data["students"]:
        assert row["error"] is None and row["passed"] == ["01"], row["name"]
        assert set(row["exercises"]) == {"01", "04"} and row["exercises"]["04"]["passed"] is False
    by = {r["name"]: r for r in data["students"]}
    assert 0 < by[me]["skipped"] <= progressfile.MAX_LINES and "lines of their progress file skipped" in page
    assert all(r["skipped"] == 0 for r in data["students"] if r["name"] != me)


def test_only_verdicts_on_the_courses_exercises_are_kept(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    t = "2025-01-01T10:0{}:00Z".format
    write(tmp_path / me / "progress.jsonl",
          rec("01", False, t(1)), rec("01", 1, t(2)),  # 1 == True, but not a verdict
          rec("02", False, t(1)), rec("02", "true", t(2)),
          rec("03", True, t(1), summary={"html": "<b>"}), rec("03", True, t(2), summary=5),
          rec("05", True, t(3), mode=["live"]), rec("05", True, 20250101),
          rec("99", True, t(3)), rec("not-an-exercise", True, t(3)), {"exercise": 5, "passed": True},
          {"exercise": "06", "summary": "no verdict"},
          rec("06", None, t(4), mode="replay", summary="\ud800\x00<b>" + "x" * 1000),
          rec("08", True, t(5), lesson=None, notebook="n" * 100))
    users = [{"name": me, "admin": False, "last_activity": None, "servers": {}}]
    data = instructor.report(users, str(tmp_path / "{name}" / "progress.jsonl"))
    (row,) = data["students"]
    assert data["exercises"] == sorted(exercises.all_checks()) and "99" not in data["exercises"]
    assert set(row["exercises"]) == {"01", "02", "06", "08"} and row["passed"] == ["08"]
    assert row["exercises"]["01"] == {"passed": False, "summary": "s", "when": t(1), "mode": "live",
                                      "lesson": "01_x", "tries": 1}
    assert row["exercises"]["02"]["passed"] is False and row["skipped"] == 10
    assert row["exercises"]["06"]["summary"] == "??<b>" + "x" * 295  # cut, and what a page cannot hold replaced
    assert row["exercises"]["08"]["lesson"] is None and "notebook" not in row["exercises"]["08"]
    page = instructor.render(data)
    page.encode("utf-8")  # what tornado sends: a lone surrogate would fail here
    assert "&lt;b&gt;" in page and "<b>" not in page and "\x00" not in page and "10 lines" in page


def test_a_line_longer_than_a_record_is_not_parsed(tmp_path):
    long = rec("01", True, "2025-01-01T10:00:00Z", summary="x" * progressfile.MAX_LINE)
    path = write(tmp_path / "p.jsonl", long, rec("04", True, "2025-01-01T10:01:00Z"), raw=["\n", "  \n"])
    records, skipped = progressfile.load(path)
    assert [r["exercise"] for r in records] == ["04"] and skipped == 1  # blank lines are not junk
    path.write_text("".join(f"{i}\n" for i in range(progressfile.MAX_READ // 4)))  # more lines than are looked at
    lines = progressfile.tail(path)
    assert len(lines) == progressfile.MAX_LINES and lines[-2:] == [str(progressfile.MAX_READ // 4 - 1).encode(), b""]


def test_a_row_that_cannot_be_built_says_so_and_the_others_are_served(tmp_path):
    me = pwd.getpwuid(os.getuid()).pw_name
    write(tmp_path / me / "progress.jsonl", rec("01", True, "2025-01-01T10:05:00Z"))
    users = [{"name": me, "admin": False, "last_activity": None, "servers": {}},
             {"name": "a\x00b", "admin": True, "last_activity": None, "servers": {}}]  # no user is: getpwnam raises
    data = instructor.report(users, str(tmp_path / "{name}" / "progress.jsonl"))
    by = {r["name"]: r for r in data["students"]}
    assert by[me]["passed"] == ["01"] and by[me]["error"] is None
    assert by["a\x00b"]["error"] == "their progress could not be read (ValueError)"
    assert by["a\x00b"]["exercises"] == {} and by["a\x00b"]["server"] == "stopped" and by["a\x00b"]["admin"]
    page = instructor.render(data)
    assert page.count("<tr>") == 1 + len(users) and "their progress could not be read" in page and "passed" in page


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
