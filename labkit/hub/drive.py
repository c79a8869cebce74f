"""Run a notebook through a student's own Jupyter server, the way their
browser does: the server's REST API starts a kernel, its websocket carries
each cell's ``execute_request`` and brings back the outputs.

The workshop test and benchmark use it to run lesson 01 live as several
students at once; an instructor can use it to check a student's server.

    with ServerKernel(server_url, token) as k:
        result = run_notebook(k, "01_first_storage.ipynb")

``result`` has the shape of ``labkit.course.nbrun.execute``'s (errors, checks,
replay banner) plus when the first graph appeared.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from labkit.course.outputs import scan
from labkit.errors import LabError


class ServerKernel:
    """A kernel on a Jupyter server reached over HTTP. server_url is the
    server's base (e.g. ``http://127.0.0.1:8000/user/ana/``); token is an
    API token of the server's owner. cwd: the notebook's folder, relative to
    the server's root (the kernel starts there)."""

    def __init__(self, server_url: str, token: str, *, cwd: str = "", timeout: float = 600):
        import requests

        self.base = server_url.rstrip("/") + "/"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self.token = token
        self.cwd = cwd
        self.timeout = timeout
        self.kernel_id = None
        self.session = uuid.uuid4().hex
        self.loop = asyncio.new_event_loop()
        self.ws = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    def start(self):
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        r = self.http.post(self.base + "api/sessions", json={
            "path": (self.cwd + "/" if self.cwd else "") + f"drive-{self.session[:8]}.ipynb",
            "type": "notebook", "name": "", "kernel": {"name": "python3"}}, timeout=60)
        if r.status_code >= 300:
            raise LabError(f"the server at {self.base} did not start a kernel: HTTP {r.status_code}",
                           details=r.text[-2000:])
        body = r.json()
        self.session_id = body["id"]
        self.kernel_id = body["kernel"]["id"]
        url = self.base.replace("http", "ws", 1) + f"api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        req = HTTPRequest(url, headers={"Authorization": f"token {self.token}"})

        async def connect():  # inside the loop: tornado binds the socket to the running loop
            return await websocket_connect(req)

        self.ws = self.loop.run_until_complete(connect())

    def shutdown(self):
        if self.ws is not None:
            ws, self.ws = self.ws, None

            async def close():  # inside the loop: any thread may end the kernel
                ws.close()

            self.loop.run_until_complete(close())
        if self.kernel_id:
            try:
                self.http.delete(self.base + f"api/sessions/{self.session_id}", timeout=30)
            except OSError:
                pass
            self.kernel_id = None
        self.loop.close()

    def execute(self, code: str, timeout: float | None = None, on_output=None) -> dict:
        """Run code; {"status", "outputs"} with nbformat-shaped outputs.
        on_output(output) is called as each output arrives."""
        msg_id = uuid.uuid4().hex
        msg = {"header": {"msg_id": msg_id, "username": "labkit", "session": self.session,
                          "msg_type": "execute_request", "version": "5.3",
                          "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": False}}
        return self.loop.run_until_complete(self._execute(msg, timeout or self.timeout, on_output))

    async def _execute(self, msg, timeout, on_output):
        await self.ws.write_message(json.dumps(msg))
        msg_id = msg["header"]["msg_id"]
        outputs, status, idle = [], None, False
        deadline = time.monotonic() + timeout
        while not (idle and status):
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"a cell did not finish within {timeout:g}s on the student's server",
                               details=msg["content"]["code"][:500])
            raw = await asyncio.wait_for(self.ws.read_message(), left)
            if raw is None:
                raise LabError("the student's kernel closed its connection (did it die?)")
            if isinstance(raw, bytes):
                continue  # binary frames carry widget buffers: not needed here
            reply = json.loads(raw)
            if reply.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = reply["msg_type"], reply["content"]
            out = None
            if kind == "stream":
                out = {"output_type": "stream", "name": content["name"], "text": content["text"]}
            elif kind in ("display_data", "execute_result", "update_display_data"):
                out = {"output_type": kind, "data": content.get("data", {}),
                       "metadata": content.get("metadata", {})}
            elif kind == "error":
                out = {"output_type": "error", "ename": content["ename"], "evalue": content["evalue"],
                       "traceback": content.get("traceback", [])}
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                status = content.get("status")
            if out is not None:
                outputs.append(out)
                if on_output:
                    on_output(out)
        return {"status": status, "outputs": outputs}


def is_graph(output) -> bool:
    """A lifetime graph: the SVG labkit.viz draws (inline or inside the step-through's HTML)."""
    data = output.get("data") or {}
    return "image/svg+xml" in data or "<svg" in data.get("text/html", "")


def run_notebook(kernel: ServerKernel, nb, *, cell_timeout: float = 600) -> dict:
    """Every code cell of nb (an nbformat notebook) in order; what it showed,
    with the seconds to the first graph and to the end, and whether its lab
    VM waited for a boot slot (the machine-wide cap, labkit.vm.slots)."""
    t0 = time.monotonic()
    first_graph, queued = [], []

    def seen(out):
        if not first_graph and is_graph(out):
            first_graph.append(round(time.monotonic() - t0, 1))
        if "waiting for a boot slot" in out.get("text", ""):
            queued.append(True)

    ran = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.strip():
            ran.append((i, kernel.execute(cell.source, cell_timeout, on_output=seen)["outputs"]))
    errors, checks, banner = scan(ran)
    return {"errors": errors, "checks": checks, "replay_banner": banner,
            "first_graph_s": first_graph[0] if first_graph else None, "boot_queued": bool(queued),
            "seconds": round(time.monotonic() - t0, 1)}
