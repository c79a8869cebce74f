"""The instructor view: which students have a server, a lab VM, and which exercise checks pass.

A JupyterHub service managed by the hub (``service_config()`` is its entry in
``c.JupyterHub.services``, ``roles()`` what it may read), running as root
beside the hub so that it can read every student's progress file and see
their processes. One page at ``/services/instructor/`` (refreshes itself)
and the same data as JSON at ``/services/instructor/api/students``. Login is
the hub's own OAuth (``HubOAuthenticated``): only users with the scope
``access:services!service=instructor`` get in, which hub admins have (the
workshop's instructors); ``roles(instructors=[...])`` grants it to others.

Per student (a user the hub knows, from its REST API with the service's token):

- server: running, starting, stopping or stopped (the hub says);
- lab VMs: the pids of QEMU processes owned by the student's unix uid whose
  command line names labkit's guest init, booted or restored from a warm
  snapshot (``MARKER``);
- exercises: the latest verdict per exercise of the course from the student's own
  ``~/.cache/labkit/progress.jsonl`` (``labkit.course.checking.record``), read as
  ``labkit.hub.progressfile`` reads a file the student controls: not through a symlink, only
  their own regular file, only its tail, line by line, keeping only records that are verdicts
  on the course's exercises; ``skipped`` counts the lines that were not (someone sending junk);
- last activity: the latest of the hub's activity and the last check.

One student's row that cannot be built (whatever the reason) says so (``error``) and every
other student is still served; the columns are the course's exercises, never ids found in a
file, so the page stays the same size whatever the files hold.

JupyterHub is imported only when the service runs, so this module imports without it.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import pwd
import socket
import sys
import time
from datetime import datetime, timezone

from labkit import paths
from labkit.hub.progressfile import course_exercises, latest, load

NAME = "instructor"
PROGRESS = "{home}/.cache/labkit/progress.jsonl"  # where a student's checks are recorded; {home} {name} {uid}
# In every lab VM's QEMU command line: its guest init (labkit/guest/init booted, warm-init restored).
MARKER = f"init={paths.GUEST_DIR}/".encode()
SCOPES = ["list:users", "read:users", "read:servers"]


# -- the hub's side -------------------------------------------------------------------------


def service_config(prefix_dir: str, state_dir: str, port: int = 0, progress: str = PROGRESS) -> dict:
    """The ``c.JupyterHub.services`` entry: the hub starts it (as root) with the install's Python."""
    port = port or _free_port()
    return {
        "name": NAME,
        "display": True,
        "info": {"description": "students, their lab VMs and exercise checks"},
        "url": f"http://127.0.0.1:{port}",
        "command": [os.path.join(prefix_dir, "venv", "bin", "python"), "-m", "labkit.hub.instructor",
                    "--progress", progress],
        "cwd": state_dir,
        "oauth_no_confirm": True,
    }


def roles(service: dict | None = None, instructors=()) -> list[dict]:
    """The ``c.JupyterHub.load_roles`` entries: what the service may read; who may open it besides admins."""
    name = (service or {}).get("name", NAME)
    out = [{"name": "skb-lab-instructor-view", "description": "the instructor view reads users and servers",
            "scopes": list(SCOPES), "services": [name]}]
    if instructors:
        out.append({"name": "skb-lab-instructor", "description": "may open the instructor view",
                    "scopes": [f"access:services!service={name}"], "users": list(instructors)})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the data -------------------------------------------------------------------------------


def lab_vms_by_uid(marker: bytes = MARKER) -> dict[int, list[int]]:
    """{uid: [pid, ...]} of the lab VMs' QEMU processes on this machine."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                cmd = fh.read()
            uid = os.stat(f"/proc/{d}").st_uid
        except OSError:
            continue
        if b"qemu-system" in cmd and marker in cmd:
            out.setdefault(uid, []).append(int(d))
    return {uid: sorted(pids) for uid, pids in out.items()}


def _when(text):
    if not text:
        return None
    with contextlib.suppress(ValueError, TypeError):
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return None


def _server_state(user: dict) -> str:
    server = (user.get("servers") or {}).get("")
    if server is None:
        return "stopped"
    if server.get("pending"):
        return {"spawn": "starting", "stop": "stopping"}.get(server["pending"], server["pending"])
    return "running" if server.get("ready") else "starting"


def students(users: list[dict], progress: str = PROGRESS, vms: dict | None = None) -> list[dict]:
    """One row per hub user (the hub's user models, as from GET /users) with what this machine knows."""
    vms = lab_vms_by_uid() if vms is None else vms
    rows = []
    for u in sorted(users, key=lambda u: str(u.get("name"))):
        try:
            rows.append(_row(u, progress, vms))
        except Exception as exc:  # noqa: BLE001 - one student's row never takes the others' down
            rows.append(_unreadable(u, exc))
    return rows


def _row(u: dict, progress: str, vms: dict) -> dict:
    try:
        pw = pwd.getpwnam(u["name"])
    except KeyError:
        pw = None
    records, skipped = load(progress.format(home=pw.pw_dir, name=pw.pw_name, uid=pw.pw_uid), pw.pw_uid
                            ) if pw else ([], 0)
    ex = latest(records)
    server = (u.get("servers") or {}).get("") or {}
    times = [t for t in (_when(u.get("last_activity")), _when(server.get("last_activity")),
                         *(_when(e["when"]) for e in ex.values())) if t]
    return {
        "name": u["name"],
        "admin": bool(u.get("admin")),
        "uid": pw.pw_uid if pw else None,
        "server": _server_state(u),
        "lab_vms": vms.get(pw.pw_uid, []) if pw else [],
        "exercises": ex,
        "passed": sorted(k for k, e in ex.items() if e["passed"] is True),
        "last_activity": max(times).isoformat(timespec="seconds") if times else None,
        "skipped": skipped,  # lines of the progress file that were not verdicts on the course's exercises
        "error": None,
    }


def _unreadable(u: dict, exc: Exception) -> dict:
    """The row of a student whose row could not be built: who, and that it failed."""
    server = "unknown"
    with contextlib.suppress(Exception):
        server = _server_state(u)
    return {"name": str(u.get("name")), "admin": bool(u.get("admin")), "uid": None, "server": server,
            "lab_vms": [], "exercises": {}, "passed": [], "last_activity": None, "skipped": 0,
            "error": f"their progress could not be read ({type(exc).__name__})"}


def exercise_ids() -> list[str]:
    """The report's columns: the course's exercises (never ids found in a progress file)."""
    return sorted(course_exercises())


def report(users: list[dict], progress: str = PROGRESS) -> dict:
    rows = students(users, progress)
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "exercises": exercise_ids(),
            "students": rows}


# -- the page -------------------------------------------------------------------------------

_STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:4px 8px;text-align:center}td.name{text-align:left}"
          ".ok{background:#e8f5e9;color:#2e7d32}.no{background:#ffebee;color:#c62828}.na{color:#999}")


def render(data: dict, api_url: str = "api/students") -> str:
    """The page for a report(): one row per student."""
    e = html.escape
    heads = "".join(f"<th>{e(x)}</th>" for x in data["exercises"])
    rows = []
    for r in data["students"]:
        if r.get("error"):
            cells = [f'<td class="no" colspan="{len(data["exercises"])}">{e(r["error"])}</td>']
        else:
            cells = [_cell(r["exercises"].get(x)) for x in data["exercises"]]
        vms = ", ".join(str(p) for p in r["lab_vms"]) or "&ndash;"
        who = e(r["name"]) + (" (admin)" if r["admin"] else "")
        if r.get("skipped"):
            who += f'<br><small class="no">{int(r["skipped"])} lines of their progress file skipped</small>'
        rows.append(f'<tr><td class="name">{who}</td><td>{e(r["server"])}</td><td>{vms}</td>{"".join(cells)}'
                    f'<td>{e(r["last_activity"] or "never")}</td></tr>')
    running = sum(1 for r in data["students"] if r["lab_vms"])
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">'
            f"<title>Workshop: students</title><style>{_STYLE}</style></head><body>"
            f"<h2>Students ({len(data['students'])}; {running} with a lab VM)</h2>"
            f"<table><tr><th>student</th><th>server</th><th>lab VM (QEMU pids)</th>{heads}"
            f"<th>last activity</th></tr>{''.join(rows)}</table>"
            f'<p>As of {e(data["when"])}; this page refreshes every 10 s. The same as JSON: '
            f'<a href="{e(api_url)}">{e(api_url)}</a>.</p></body></html>')


def _cell(v: dict | None) -> str:
    if v is None:
        return '<td class="na">&ndash;</td>'
    passed = v.get("passed")
    cls, mark = ("ok", "passed") if passed is True else ("no", "not yet") if passed is False else ("na", "not checked")
    tip = f"{v.get('summary') or ''} ({v.get('tries')} tries, last {v.get('when')}, {v.get('mode')})"
    return f'<td class="{cls}" title="{html.escape(tip)}">{mark}</td>'


# -- the service ----------------------------------------------------------------------------


async def hub_users() -> list[dict]:
    """Every user model from the hub's REST API (all pages), with the service's token."""
    from tornado.httpclient import AsyncHTTPClient

    api = os.environ["JUPYTERHUB_API_URL"].rstrip("/")
    headers = {"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
               "Accept": "application/jupyterhub-pagination+json"}
    client, users, offset = AsyncHTTPClient(), [], 0
    while True:
        resp = await client.fetch(f"{api}/users?offset={offset}&limit=200", headers=headers)
        page = json.loads(resp.body)
        if isinstance(page, list):  # a hub without pagination
            return users + page
        users += page["items"]
        nxt = (page.get("_pagination") or {}).get("next")
        if not nxt or not page["items"]:
            return users
        offset = nxt["offset"]


def make_app(progress: str = PROGRESS, prefix: str | None = None):
    from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web

    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{NAME}/")

    class Page(HubOAuthenticated, web.RequestHandler):
        @web.authenticated
        async def get(self):
            self.set_header("Cache-Control", "no-store")
            self.write(render(report(await hub_users(), progress)))

    class Api(HubOAuthenticated, web.RequestHandler):
        def get_login_url(self):  # a script gets a 403, not a redirect to the login page
            raise web.HTTPError(403)

        @web.authenticated
        async def get(self):
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.write(json.dumps(report(await hub_users(), progress)))

    return web.Application([
        (prefix, Page),
        (url_path_join(prefix, "api/students"), Api),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=os.urandom(32))


def main(argv=None):
    from urllib.parse import urlsplit

    from tornado.ioloop import IOLoop

    ap = argparse.ArgumentParser(prog="python -m labkit.hub.instructor", description=__doc__.split("\n")[0])
    ap.add_argument("--progress", default=PROGRESS, help="a student's progress file ({home} {name} {uid})")
    args = ap.parse_args(argv)
    url = urlsplit(os.environ.get("JUPYTERHUB_SERVICE_URL", ""))
    if not url.port or "JUPYTERHUB_API_TOKEN" not in os.environ:
        sys.exit("the instructor view runs as a JupyterHub service: `labkit hub start` starts it")
    make_app(args.progress).listen(url.port, url.hostname or "127.0.0.1")
    print(f"instructor view on {url.geturl()} ({time.strftime('%H:%M:%S')})", flush=True)
    try:
        IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT: a normal end, no traceback
        pass


if __name__ == "__main__":
    main()
