"""What the browser tests share: JupyterLab on a working copy of the lessons,
a headless Chromium page, and running a notebook's cells.

The server serves a copy of the lessons in a temporary folder (as ``labkit
open`` serves the learner's copy under their home), with settings and
workspaces of its own and autosave off, so a browser test never writes into
the checkout: its notebooks are compared before and after.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit import paths
from labkit.course import jupyter, workcopy
from labkit.course.lesson import live_possible
from tests.conftest import need

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ART = paths.PROJECT / "artifacts" / "browser"
RUN_ALL_TIMEOUT_MS = 600_000  # live: the VM boots, the scenarios and the check run


def notebooks_digest():
    h = hashlib.sha256()
    for p in sorted((paths.PROJECT / "notebooks").rglob("*.ipynb")):
        h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def lab_server(mode=None, copy_hook=None):
    """JupyterLab on a temporary copy of the lessons; yields its URL. mode sets
    LABKIT_MODE for its kernels; copy_hook(folder) may change the copy first."""
    need(os.path.exists(CHROMIUM), "the browser tests need Debian's chromium", "sudo apt-get install chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        need(False, "the browser tests need Playwright", "./lab setup (pip install playwright)")
    if mode in (None, "live"):
        ok, why = live_possible()
        need(ok, f"the browser test runs the lesson live: {why}", "./lab setup")
    before = notebooks_digest()
    with tempfile.TemporaryDirectory(prefix="labkit-browser-") as tmp:
        root, _ = workcopy.seed(Path(tmp, "lessons"))
        if copy_hook:
            copy_hook(root)
        docmanager = Path(tmp, "settings", "@jupyterlab", "docmanager-extension")
        docmanager.mkdir(parents=True)
        (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
        env = {"JUPYTERLAB_SETTINGS_DIR": str(Path(tmp, "settings")),
               "JUPYTERLAB_WORKSPACES_DIR": str(Path(tmp, "workspaces"))}
        if mode:
            env["LABKIT_MODE"] = mode  # the notebooks' kernels inherit it from the server
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            proc, url = jupyter.start(root=root)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            yield url
        finally:
            jupyter.stop(proc)
    assert notebooks_digest() == before, "the browser test changed the checkout's notebooks"


@pytest.fixture()
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            yield pg
        finally:
            browser.close()


def open_notebook(page, url, name):
    """Open notebooks/name.ipynb alone (not a restored workspace), its kernel connected."""
    target = url.replace("00_index.ipynb", f"{name}.ipynb")
    page.goto(target + ("&" if "?" in target else "?") + "reset")
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-Toolbar-kernelStatus, .jp-KernelStatus", timeout=60_000)
    page.wait_for_timeout(1500)  # the kernel connects


def run_all(page, url, name, mode, last_output):
    """Run all cells; done when last_output (a selector for the last code cell's output) is on the page."""
    ART.mkdir(parents=True, exist_ok=True)
    open_notebook(page, url, name)
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    try:
        page.wait_for_selector(last_output, timeout=RUN_ALL_TIMEOUT_MS)
        page.wait_for_timeout(1000)
    finally:
        page.screenshot(path=str(ART / f"{name}-{mode}.png"), full_page=True)
    check_ran(page, mode)


def check_ran(page, mode):
    """No cell showed a traceback, and the banner says the mode the lesson ran in."""
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[:2]
    assert page.locator(f".labkit-banner:has-text('{'LIVE' if mode == 'live' else 'REPLAY'}')").count() >= 1
