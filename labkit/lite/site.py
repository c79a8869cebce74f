"""``labkit lite build``: the course in replay as a static JupyterLite site.

JupyterLite runs JupyterLab and a Python kernel (Pyodide) in the browser from
static files. The site holds lessons 00-10, labkit as a wheel (the recordings
inside), its own Pyodide (``labkit.lite.pyodide``) and Graphviz in WebAssembly for
the graphs (``labkit.viz.wasm``), so any static file server (GitHub Pages, a USB
stick at a workshop, ``python3 -m http.server``) serves the whole course and
nothing is fetched from anywhere else. It must be served over HTTP: a
``file://`` page cannot start the kernel's workers.

A lesson's kernel starts in seconds, not the 18 s it took (benchmarks/lite_site.py):
Pyodide loads the kernel's packages from the lock in one go (``PRELOAD``), their
modules and the standard library come compiled (``labkit.lite.bytecode``), the
kernel's modules are imported before its drive is mounted (``boot.mjs``), the kernel
starts with the lab page while JupyterLab starts (``labkit.lite.early``), JupyterLab
leaves off the plugins the course does not use (``DISABLED``), and service workers
keep the site, JupyterLab's scripts compiled, for the next visit
(``labkit.lite.serviceworker``).

    labkit lite build [-o DIR]                 # default: artifacts/lite
    python3 -m http.server -d DIR 8000         # then open http://127.0.0.1:8000/lab/
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

from labkit import paths
from labkit.errors import LabError
from labkit.lite.early import add_early_kernel
from labkit.lite.pyodide import BOOT, PRELOAD, PYODIDE, pyodide_folder
from labkit.lite.registry import npm_package, run
from labkit.lite.serviceworker import add_service_worker

VIZ = "@viz-js/viz@3.31.0"  # Graphviz compiled to WebAssembly: one ES module (dist/viz.js), the wasm inside
VIZ_DIR = "static/labkit"    # where the site serves it (labkit.viz.wasm loads it from there)
PYODIDE_DIR = "static/pyodide"  # the site's Pyodide (labkit.lite.pyodide)
KERNEL_PLUGIN = "@jupyterlite/pyodide-kernel-extension:kernel"
# JupyterLab's plugins the course never uses, not started (page config's disabledExtensions): less
# for the page to do before it opens the lesson. Viewers and renderers of files and outputs the
# lessons do not have, terminals and language servers (none in the browser), consoles, the
# cell and notebook metadata editors, the workspaces' and the help menu's web links.
DISABLED = (
    "@jupyterlab/terminal-extension", "@jupyterlab/services-extension:terminal-manager",
    "@jupyterlab/lsp-extension", "@jupyterlab/notebook-extension:language-server",
    "@jupyterlab/fileeditor-extension:language-server", "@jupyterlite/application-extension:lsp-connection-manager",
    "@jupyterlab/console-extension", "@jupyterlab/notebook-extension:code-console",
    "@jupyterlab/tooltip-extension:consoles", "@jupyterlab/inspector-extension", "@jupyterlab/logconsole-extension",
    "@jupyterlab/csvviewer-extension", "@jupyterlab/htmlviewer-extension", "@jupyterlab/pdf-extension",
    "@jupyterlab/vega5-extension", "@jupyterlab/mermaid-extension", "@jupyterlab/json-lines-extension",
    "@jupyterlab/audio-extension", "@jupyterlab/video-extension", "@jupyterlab/javascript-extension",
    "@jupyterlab/notebook-extension:metadata-editor", "@jupyterlab/metadataform-extension",
    "@jupyterlab/notebook-extension:update-raw-mimetype", "@jupyterlab/celltags-extension",
    "@jupyterlab/workspaces-extension", "@jupyterlab/theme-dark-high-contrast-extension",
    "@jupyterlab/help-extension:jupyter-forum", "@jupyterlab/help-extension:open",
    "@jupyterlab/help-extension:resources",
    "@jupyterlab/running-extension:recently-closed", "@jupyterlab/running-extension:search-tabs",
)
LESSONS = "[0-9][0-9]_*.ipynb"


def default_out() -> Path:
    return paths.PROJECT / "artifacts" / "lite"


def _tools():
    """jupyterlite-core and the Pyodide kernel at the versions this site is made for."""
    from importlib import metadata

    try:
        core = metadata.version("jupyterlite-core")
        kernel = metadata.version("jupyterlite-pyodide-kernel")
    except metadata.PackageNotFoundError:
        raise LabError("JupyterLite is not installed", fix="./lab setup (or: pip install -e '.[lite]')") from None
    from jupyterlite_pyodide_kernel.constants import PYODIDE_VERSION

    if PYODIDE_VERSION != PYODIDE:
        raise LabError(f"jupyterlite-pyodide-kernel {kernel} wants Pyodide {PYODIDE_VERSION}, the site ships {PYODIDE}",
                       fix="pip install -e '.[lite]' (the pinned versions)")
    return core, kernel


def _lite_dir(work: Path, lessons: Path) -> Path:
    """The JupyterLite input: settings (no PyPI, the lock's packages only, the kernel's own loaded
    with Pyodide in one go, the plugins the course does not use off) and the lessons."""
    lite = work / "lite"
    lite.mkdir()
    settings = {"disablePyPIFallback": True, "loadPyodideOptions": {"packages": list(PRELOAD)}}
    (lite / "jupyter-lite.json").write_text(json.dumps({
        "jupyter-lite-schema-version": 0,
        "jupyter-config-data": {"appName": "skb storage lab", "litePluginSettings": {KERNEL_PLUGIN: settings},
                                "disabledExtensions": list(DISABLED)},
    }, indent=1))
    for nb in sorted((paths.shipped("notebooks")).glob(LESSONS)):
        shutil.copy2(nb, lessons / nb.name)
    if not any(lessons.glob("*.ipynb")):
        raise LabError("no lessons to put in the site", fix="is this the lab's checkout? (git status)")
    return lite


def use_boot(site: Path):
    """The kernel's pyodideUrl: labkit's boot.mjs in the site's Pyodide folder (labkit.lite.pyodide).
    Set in the built site's settings: jupyter lite build writes its own, the folder's pyodide.mjs,
    over the input's."""
    config = site / "jupyter-lite.json"
    data = json.loads(config.read_text())
    settings = data["jupyter-config-data"]["litePluginSettings"][KERNEL_PLUGIN]
    if not (site / settings["pyodideUrl"]).with_name(BOOT).exists():
        raise LabError(f"the site's Pyodide ({settings['pyodideUrl']}) has no {BOOT} beside it")
    settings["pyodideUrl"] = settings["pyodideUrl"].rsplit("/", 1)[0] + "/" + BOOT
    config.write_text(json.dumps(data, indent=2))


def build(out=None, say=print) -> dict:
    """Build the site into out (replaced); a report of what went in and how long it took."""
    t0 = time.monotonic()
    out = Path(out or default_out()).resolve()
    core, kernel = _tools()
    work = paths.private_dir(paths.state_dir() / "lite-build")
    shutil.rmtree(work)
    work.mkdir(mode=0o700)
    try:
        lessons = work / "lessons"
        lessons.mkdir()
        lite = _lite_dir(work, lessons)
        report = pyodide_folder(lite / PYODIDE_DIR, work, say)
        say(f"Graphviz in WebAssembly ({VIZ})")
        viz = npm_package(VIZ)
        say(f"jupyter lite build (jupyterlite-core {core}, pyodide kernel {kernel})")
        tmp_out = work / "site"
        run([sys.executable, "-m", "jupyterlite_core", "build", "--lite-dir", lite, "--contents", lessons,
             "--output-dir", tmp_out, "--apps", "lab", "--no-sourcemaps", "--no-unused-shared-packages"],
            "jupyter lite build", cwd=work, timeout=900)
        (tmp_out / VIZ_DIR).mkdir(parents=True, exist_ok=True)
        shutil.copy2(viz / "dist" / "viz.js", tmp_out / VIZ_DIR / "viz.js")
        use_boot(tmp_out)
        report.update(add_early_kernel(tmp_out, PYODIDE_DIR, BOOT, PRELOAD))
        report.update(add_service_worker(tmp_out))
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_out), out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = [p for p in out.rglob("*") if p.is_file()]
    report.update(out=str(out), lessons=sorted(p.name for p in (out / "files").glob("*.ipynb")),
                  files=len(files), bytes=sum(p.stat().st_size for p in files),
                  seconds=round(time.monotonic() - t0, 1))
    say(f"site in {out}: {report['files']} files, {report['bytes'] / 1e6:.1f} MB, {report['seconds']} s; "
        f"serve it: python3 -m http.server -d {out} 8000, then open http://127.0.0.1:8000/lab/")
    return report


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder, host="127.0.0.1", port=0):
    """Python's plain static file server on folder (a free port unless port is given); yields its URL."""
    httpd = http.server.ThreadingHTTPServer((host, port), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class Offline:
    """Headless Chromium (Playwright) that reaches only the site at url: every other request is
    aborted and kept in ``outside``. ``page()`` opens a tab in a fresh profile (JupyterLite keeps
    a profile's open notebooks); ``close()`` ends it all."""

    def __init__(self, url, chromium="/usr/bin/chromium"):
        from playwright.sync_api import sync_playwright

        self.url, self.outside = url, []
        self._pw = sync_playwright().start()
        try:
            args = ["--no-sandbox"] if os.geteuid() == 0 else []
            self.browser = self._pw.chromium.launch(executable_path=chromium, headless=True, args=args)
        except BaseException:
            self._pw.stop()
            raise

    def _route(self, r):
        if r.request.url.startswith(self.url + "/"):
            r.continue_()
        else:
            self.outside.append(r.request.url)
            r.abort()

    def page(self):
        ctx = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.route("**/*", self._route)
        return ctx.new_page()

    def close(self):
        try:
            self.browser.close()
        finally:
            self._pw.stop()


def add_commands(sub):
    """labkit lite build [-o DIR]"""
    lt = sub.add_parser("lite", help="the course in replay as a static JupyterLite site").add_subparsers()
    b = lt.add_parser("build", help="build the site: lessons 00-10 in replay, their Pyodide and Graphviz, "
                      "for any static file server")
    b.add_argument("-o", "--out", help=f"the site's folder, replaced (default {default_out()})")
    b.set_defaults(func=lambda args: build(args.out) and None)
