"""JupyterLab in headless Chromium (Playwright, Debian's chromium): open
01_first_storage, run all cells, and check the lifetime graph and the
step-through work in a real browser. The screenshot is kept in
artifacts/browser/.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from labkit import jupyter, paths
from labkit.lesson import live_possible
from tests.conftest import need

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ART = paths.PROJECT / "artifacts" / "browser"
RUN_ALL_TIMEOUT_MS = 600_000  # live: the VM boots, the scenarios and the check run


def _notebooks_digest():
    h = hashlib.sha256()
    for p in sorted((paths.PROJECT / "notebooks").rglob("*.ipynb")):
        h.update(p.read_bytes())
    return h.hexdigest()


@contextlib.contextmanager
def lab_server(mode=None):
    """JupyterLab on the lessons with settings and workspaces of its own, in a
    temporary directory: autosave off, so running the lessons in the browser
    never writes outputs into the committed notebooks (checked on the way out);
    mode sets LABKIT_MODE for its kernels."""
    need(os.path.exists(CHROMIUM), "the browser tests need Debian's chromium", "sudo apt-get install chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        need(False, "the browser tests need Playwright", "./lab setup (pip install playwright)")
    if mode in (None, "live"):
        ok, why = live_possible()
        need(ok, f"the browser test runs the lesson live: {why}", "./lab setup")
    before = _notebooks_digest()
    with tempfile.TemporaryDirectory(prefix="labkit-browser-") as tmp:
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
            proc, url = jupyter.start()
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
    assert _notebooks_digest() == before, "the browser test changed the notebooks on disk"


@pytest.fixture(scope="module")
def server():
    with lab_server() as url:
        yield url


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


def run_all(page, url, name, mode, last_output):
    """Run all cells; done when last_output (a selector for the last code cell's output) is on the page."""
    ART.mkdir(parents=True, exist_ok=True)
    target = url.replace("00_index.ipynb", f"{name}.ipynb")
    page.goto(target + ("&" if "?" in target else "?") + "reset")  # this notebook alone, not a restored workspace
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-Toolbar-kernelStatus, .jp-KernelStatus", timeout=60_000)
    page.wait_for_timeout(1500)  # the kernel connects
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    try:
        page.wait_for_selector(last_output, timeout=RUN_ALL_TIMEOUT_MS)
        page.wait_for_timeout(1000)
    finally:
        page.screenshot(path=str(ART / f"{name}-{mode}.png"), full_page=True)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[:2]
    assert page.locator(f".labkit-banner:has-text('{'LIVE' if mode == 'live' else 'REPLAY'}')").count() >= 1


@pytest.mark.timeout(900)
def test_first_storage_runs_in_the_browser(server, page):
    # The exercise check is the last output: everything above has run by then.
    run_all(page, server, "01_first_storage", "live", ".labkit-check")

    # The lifetime graph: as a static SVG (JupyterLab shows it as an <img>) and in the step-through.
    static = page.locator(".jp-RenderedSVG img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    lifetime = [s for s in static if s.startswith("data:image/svg+xml") and "legend" in s and "skb%231" in s]
    assert lifetime, f"no lifetime graph among {len(static)} static SVGs"
    explorer = page.locator(".labkit-explorer").first
    explorer.scroll_into_view_if_needed()
    frame = explorer.locator(".labkit-frame svg g.graph")
    assert frame.count() == 1
    details = explorer.locator(".labkit-details")
    before_details, before_svg = details.text_content(), frame.inner_html()
    assert "step 1 of" in before_details.lower(), before_details

    # Move the slider (keyboard on its handle, as a user would): the highlighted event changes.
    handle = explorer.locator(".labkit-step .noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([el, old]) => el.textContent !== old",
        arg=[details.element_handle(), before_details], timeout=20_000)
    after_details, after_svg = details.text_content(), frame.inner_html()
    assert "step 2 of" in after_details.lower(), after_details
    assert after_details != before_details
    assert after_svg != before_svg
    page.screenshot(path=str(ART / "01_first_storage.png"), full_page=True)
    assert (ART / "01_first_storage.png").stat().st_size > 10_000
