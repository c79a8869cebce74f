"""A workshop on this machine, end to end: the hub on 127.0.0.1 with three
students created by logging in; two run lesson 01 live through their own
server's kernel (the way their browser's kernel does), the third in
headless Chromium through JupyterHub's login page and JupyterLab; each
exercise check judges that student's own work (A solved it, B and C did
not). Then the students try each other's things: A cannot read B's
notebooks, reach B's VM socket or stop B's VM (not even with `labkit
cleanup`), and A's guest cannot write outside A's lab folder nor read B's
files. Stopping the hub leaves no QEMU, no server process and no run folder.

Everything is real: the hub's own CLI, HTTP, the students' own unix users,
their own lab VMs under TCG. The students are removed at the end (only
they).
"""

import json
import os
import pwd
import shutil
import threading
from pathlib import Path

import nbformat
import pytest

from labkit import paths
from labkit.hub.auth import unix_name
from tests.conftest import need
from tests.host import hubtools as ht

pytestmark = pytest.mark.timeout(1800)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LESSON = paths.PROJECT / "notebooks" / "01_first_storage.ipynb"
SOLUTION = paths.PROJECT / "notebooks" / "solutions" / "01_first_storage.ipynb"
ART = paths.PROJECT / "artifacts" / "workshop"


def solved_lesson() -> nbformat.NotebookNode:
    """Lesson 01 as a learner who solved it has it: the exercise cell holds the solution's program."""
    nb = nbformat.read(LESSON, as_version=4)
    sol = nbformat.read(SOLUTION, as_version=4)
    answer = next(c for c in sol.cells if c.cell_type == "code" and c.source.startswith("%%bpf"))
    cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []))
    cell.source = answer.source
    return nb


def save_as_student(student, nb):
    """Save the notebook into the student's ~/lab through their server (JupyterLab's save)."""
    url = f"{student.hub.url}/user/{student.name}/api/contents/01_first_storage.ipynb"
    r = student.put(url, json={"type": "notebook", "format": "json", "content": nb},
                    headers={"Authorization": f"token {student.token}"}, timeout=60)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def workshop(hub_install):
    hub = ht.start_hub(hub_install, state=hub_install / "state-workshop", admin=f"teach-{os.urandom(3).hex()}",
                       max_vms=3)
    try:
        yield hub
    finally:
        hub.stop()
        ht.remove_users(hub.users)


def run_in_browser(hub, name, result):
    """Student C: JupyterHub's login form, then lesson 01 run from JupyterLab's Run menu."""
    from playwright.sync_api import sync_playwright

    ART.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{hub.url}/hub/login")
            page.fill("input[name=username]", name)
            page.fill("input[name=password]", hub.password(name))
            page.fill("input[name=otp]", hub.code)
            page.click("input[type=submit], button[type=submit]")
            try:
                # The hub spawns the server (a progress page), then redirects into it.
                page.wait_for_url(f"**/user/{unix_name(name)}/**", timeout=240_000)
                page.goto(f"{hub.url}/user/{unix_name(name)}/lab/tree/01_first_storage.ipynb?reset")
                page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", timeout=120_000)
                # Run All before the kernel is up runs nothing: wait for it (a busy machine takes longer).
                page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=240_000)
                page.click("li.lm-MenuBar-item:has-text('Run')")
                page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
                page.wait_for_selector(".labkit-check", timeout=900_000)
                page.wait_for_timeout(1000)
            finally:
                page.screenshot(path=str(ART / "student-c-01.png"), full_page=True)
            # the graphs: the topology (HTML holding its SVG) and the lifetime graphs' step-throughs
            graphs = page.locator(".labkit-graph svg, .labkit-frame svg").evaluate_all(
                "els => els.map(e => e.outerHTML)")
            result["graphs"] = [s for s in graphs if "legend" in s]
            result["live"] = page.locator(".labkit-banner:has-text('LIVE')").count()
            result["check"] = page.locator(".labkit-check").first.inner_text()
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            result["tracebacks"] = [t for t in errors.all_inner_texts() if "Traceback" in t]
        finally:
            browser.close()


def test_a_workshop_of_three(workshop):
    need(os.path.exists(CHROMIUM), "student C uses Debian's chromium", "sudo apt-get install chromium")
    hub = workshop
    names = ht.test_names(3, "ws")
    a, b = ht.login(hub, names[0]), ht.login(hub, names[1])
    for s in (a, b):
        ht.spawn(hub, s)
    save_as_student(a, solved_lesson())  # A typed the answer and saved; B and C leave the starter

    # -- the three run lesson 01 live at once, each on their own server and VM --
    results, failures = {}, []

    def drive(student, nb_path):
        try:
            nb = nbformat.read(nb_path, as_version=4)
            k = ht.kernel(hub, student, timeout=900)
            k.start()
            from labkit.hub.drive import run_notebook

            results[student.name] = {"kernel": k, **run_notebook(k, nb, cell_timeout=900)}
        except Exception as exc:  # noqa: BLE001 - reported below with the student's name
            failures.append(f"{student.name}: {type(exc).__name__}: {exc}")

    a_copy = home_of(a.name) / "lab" / "01_first_storage.ipynb"
    threads = [threading.Thread(target=drive, args=(a, a_copy)), threading.Thread(target=drive, args=(b, LESSON))]
    for t in threads:
        t.start()
    c_result = {}
    hub.users.append(unix_name(names[2]))  # logged in by the browser: removed at the end too
    run_in_browser(hub, names[2], c_result)
    for t in threads:
        t.join()
    assert not failures, f"{failures}\n{hub.log()}"
    ra, rb = results[a.name], results[b.name]
    try:
        for who, r in (("A", ra), ("B", rb)):
            assert not r["errors"], f"{who}: {r['errors'][:2]}"
            assert not r["replay_banner"], f"{who} got replay instead of a live VM"
            assert r["first_graph_s"] is not None, f"{who} saw no graph"
        assert [c["passed"] for c in ra["checks"]] == [True], f"A solved the exercise: {ra['checks']}"
        assert [c["passed"] for c in rb["checks"]] == [False], f"B left the starter: {rb['checks']}"
        assert c_result["graphs"], "C's browser shows no lifetime graph"
        assert c_result["live"] >= 1 and not c_result["tracebacks"], c_result
        assert "not" in c_result["check"].lower() or "fail" in c_result["check"].lower(), c_result["check"]

        # -- each student's VM is their own --
        c = unix_name(names[2])
        uids = {s: ht.uid_of(s) for s in (a.name, b.name)}
        for s, uid in uids.items():
            assert len(ht.qemus_of(uid)) == 1, f"{s} should have one lab VM: {ht.procs_of(uid)}"
        b_qemu = ht.qemus_of(uids[b.name])[0]

        # -- A's guest (root in A's VM): A's lab folder is writable, nothing else --
        guest = ra["kernel"].execute(
            "import json\n"
            "vm = lab.session.lab\n"
            f"for cmd in ['echo ok > in-lab.txt', 'echo x > {home_of(a.name)}/outside.txt',\n"
            f"            'cat {home_of(b.name)}/lab/01_first_storage.ipynb > /dev/null',\n"
            "            'echo x > /run/labkit/host/etc/labkit-workshop']:\n"
            "    r = vm.run(['sh', '-c', cmd])\n"
            "    print(json.dumps([r.code, r.err]))\n")
        lines = [json.loads(x) for x in "".join(o.get("text", "") for o in guest["outputs"]).splitlines()]
        assert len(lines) == 4, guest["outputs"]
        assert lines[0] == [0, ""], lines[0]
        assert lines[1][0] != 0 and "Read-only file system" in lines[1][1], lines[1]
        assert lines[2][0] != 0 and "Permission denied" in lines[2][1], lines[2]
        assert lines[3][0] != 0 and "Read-only file system" in lines[3][1], lines[3]
        assert (home_of(a.name) / "lab" / "in-lab.txt").read_text() == "ok\n"
        assert not (home_of(a.name) / "outside.txt").exists() and not Path("/etc/labkit-workshop").exists()

        # -- a fourth student, over the cap of 3 VMs: the recordings, with a banner saying why --
        d = ht.login(hub, ht.test_names(1, "late")[0])
        ht.spawn(hub, d)
        with ht.kernel(hub, d, timeout=300) as k:
            late = k.execute("from labkit.course.lesson import start\nlab = start(None)\nprint(lab.mode)")
        shown = " ".join(o.get("text", "") + (o.get("data") or {}).get("text/html", "") for o in late["outputs"])
        assert "replay" in shown and "all 3 lab VMs on this server are in use" in shown, late["outputs"]
        assert not ht.qemus_of(ht.uid_of(d.name)), "the student over the cap got a VM anyway"

        # -- the instructor's view sees who has a VM and who passed --
        progress = {s: _progress(s) for s in (a.name, b.name, c)}
        assert progress[a.name] == [True] and progress[b.name] == [False] and progress[c] == [False], progress
        teacher = ht.login(hub, hub.admin)
        page = teacher.get(f"{hub.url}/services/instructor/", timeout=60)  # the hub's OAuth, then the page
        assert page.status_code == 200 and a.name in page.text, page.text[-2000:]
        rows = {r["name"]: r for r in teacher.get(f"{hub.url}/services/instructor/api/students",
                                                  timeout=60).json()["students"]}
        assert rows[a.name]["passed"] == ["01"] and rows[b.name]["passed"] == [], (rows[a.name], rows[b.name])
        assert rows[b.name]["exercises"]["01"]["passed"] is False
        assert rows[a.name]["lab_vms"] == ht.qemus_of(uids[a.name]) and rows[b.name]["lab_vms"] == [b_qemu]
        assert rows[d.name]["lab_vms"] == [] and rows[d.name]["server"] == "running", rows[d.name]
        assert student_cannot_see(b, f"{hub.url}/services/instructor/api/students")

        # -- A against B: B's notebooks, VM socket and VM are out of A's reach; A's
        # `labkit cleanup` stops A's own VMs, never B's --
        b_sock = Path(_pidfile(b_qemu)).parent / "ctl.sock"
        assert b_sock.exists()
        probe = ra["kernel"].execute(
            "import os, socket, subprocess\n"
            f"for what, f in [('notebook', lambda: open({str(home_of(b.name) / 'lab' / '01_first_storage.ipynb')!r}).read()),\n"
            f"                ('socket', lambda: socket.socket(socket.AF_UNIX).connect({str(b_sock)!r})),\n"
            f"                ('kill', lambda: os.kill({b_qemu}, 9))]:\n"
            "    try:\n        f(); print(what, 'REACHED')\n"
            "    except PermissionError:\n        print(what, 'refused')\n"
            "r = subprocess.run(['labkit', 'cleanup'], capture_output=True, text=True)\n"
            "print('cleanup', r.returncode)\n")
        text = "".join(o.get("text", "") for o in probe["outputs"])
        for what in ("notebook", "socket", "kill"):
            assert f"{what} refused" in text, f"A could reach B's {what}: {text} {probe['outputs']}"
        assert "cleanup 0" in text, text
        assert ht.qemus_of(uids[b.name]) == [b_qemu], "labkit cleanup as A touched B's VM"
        again = rb["kernel"].execute('print(len(lab.run("basic")) > 0)')
        assert "True" in "".join(o.get("text", "") for o in again["outputs"]), again["outputs"]

    finally:
        for r in (ra, rb):
            r["kernel"].shutdown()

    # -- stopping the hub leaves nothing --
    students = [a.name, b.name, c, d.name]
    assert hub.stop() == 0, hub.log()
    for s in students:
        ht.assert_nothing_left(s)


def student_cannot_see(student, url) -> bool:
    """A student's own login does not open the instructor's view."""
    r = student.get(url, timeout=60)
    return r.status_code == 403 or "lab_vms" not in r.text


def _pidfile(pid) -> str:
    """The VM's pid file where it is now: a spare VM's run folder was renamed by the Lab that took
    it over (labkit.vm.spare), so the path on QEMU's command line names the folder it started in."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    started = Path(os.fsdecode(argv[argv.index(b"-pidfile") + 1]))
    for f in [started, *started.parent.parent.glob("*/qemu.pid")]:
        if f.exists() and f.read_text().strip() == str(pid):
            return str(f)
    return str(started)


def _progress(name) -> list:
    """The verdicts lesson 01's check wrote into the student's own progress file."""
    f = home_of(name) / ".cache" / "labkit" / "progress.jsonl"
    lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.exists() else []
    return [x["passed"] for x in lines if x.get("lesson") == "01_first_storage"]


def home_of(name) -> Path:
    return Path(pwd.getpwnam(name).pw_dir)
