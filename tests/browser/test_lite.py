"""The course as a static JupyterLite site (labkit lite build), offline, in headless Chromium.

The site is built into artifacts/lite and served by Python's plain static file server on
127.0.0.1. Every request to any other host is aborted and counted: none is allowed.
Lessons 01, 04, 08 and 10 run top to bottom in replay in the browser's own Python (Pyodide).
The lifetime graph is drawn by Graphviz in WebAssembly, the step-through moves, and the
prediction widget answers. The screenshots are in artifacts/browser/lite-*.png (-graph: the
step-through; -side-by-side: lesson 10's three designs, one slider), and the
build's report is in artifacts/browser/lite-build.json.
"""

import json
import os
import re
import shutil
import time

import pytest

from labkit import paths
from labkit.lite import site as lite
from tests.browser.helpers import ART, CHROMIUM, check_ran
from tests.conftest import need

SITE = paths.PROJECT / "artifacts" / "lite"
KERNEL_START_MS = 180_000  # Pyodide and the lessons' packages, on two busy cores
RUN_MS = 300_000


@pytest.fixture(scope="module")
def site():
    need(os.path.exists(CHROMIUM), "the site test needs Debian's chromium", "sudo apt-get install chromium")
    need(shutil.which("npm") is not None, "labkit lite build needs npm", "./lab test installs it")
    ART.mkdir(parents=True, exist_ok=True)
    report = lite.build(SITE)
    (ART / "lite-build.json").write_text(json.dumps(report, indent=1))
    with lite.serve(SITE) as url:
        yield url, report


@pytest.fixture(scope="module")
def browser(site):
    url, _ = site
    b = lite.Offline(url, CHROMIUM)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture()
def offline(browser):
    """A page in a fresh profile on the site; (page, url, the requests that left it)."""
    page = browser.page()
    try:
        yield page, browser.url, browser.outside
    finally:
        page.context.close()


def side_by_side(page, name):
    """Lesson 10's first side by side: a graph per design, drawn in the browser, and one slider that
    moves all three (each pane's details say the step)."""
    view = page.locator(".labkit-side-by-side").first
    view.scroll_into_view_if_needed()
    panes = view.locator(".labkit-explorer")
    assert panes.count() == 3, f"{panes.count()} panes, not one per design"
    for i in range(3):
        assert panes.nth(i).locator(".labkit-frame svg g.graph").count() == 1, f"pane {i + 1} has no graph"
    titles = view.text_content()
    assert all(t in titles for t in ("skb storage", "metadata buffer", "gated tracepoints")), titles
    details = panes.nth(1).locator(".labkit-details")
    before = details.text_content()
    handle = view.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("([el, old]) => el.textContent !== old", arg=[details.element_handle(), before],
                           timeout=60_000)
    assert "step 2 of" in details.text_content().lower()
    # to the last step: every graph whole, nothing faded (what the screenshot shows)
    last = max(int(re.search(r"step \d+ of (\d+)", panes.nth(i).locator(".labkit-details").text_content()).group(1))
               for i in range(3))
    for _ in range(last - 2):
        page.keyboard.press("ArrowRight")
    longest = next(i for i in range(3) if f"of {last}" in panes.nth(i).locator(".labkit-details").text_content())
    page.wait_for_function("([el, want]) => el.textContent.includes(want)",
                           arg=[panes.nth(longest).locator(".labkit-details").element_handle(), f"step {last} of {last}"],
                           timeout=60_000)
    page.wait_for_timeout(1000)
    view.screenshot(path=str(ART / f"lite-{name}-side-by-side.png"))


def test_the_site_builds_from_the_cache_in_under_two_minutes(site):
    _, report = site
    assert report["lessons"] == [p.name for p in sorted((paths.PROJECT / "notebooks").glob(lite.LESSONS))]
    assert "labkit-0.1.0-py3-none-any.whl" in report["wheels"]
    assert report["seconds"] < 120, report


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["01_first_storage", "04_tunnels", "08_beyond_the_rfc", "10_after_the_rfc"])
def test_lesson_runs_in_the_static_site_offline(offline, name):
    page, url, outside = offline
    t0 = time.monotonic()
    page.goto(f"{url}/lab/index.html?path={name}.ipynb")
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=KERNEL_START_MS)
    page.wait_for_selector("text=Python (Pyodide) | Idle", timeout=KERNEL_START_MS)
    page.click("li.lm-MenuBar-item:has-text('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    try:
        # The exercise check is near the end of each lesson; in replay it says it needs the live lab.
        page.wait_for_selector(".labkit-check", timeout=RUN_MS)
        page.wait_for_selector("text=Python (Pyodide) | Idle", timeout=RUN_MS)
        page.wait_for_timeout(2000)
        seconds = round(time.monotonic() - t0, 1)
        check_ran(page, "replay")

        # The lifetime graph, drawn in the browser, and its step-through.
        # a run of its own (a side-by-side's two halves share one slider above them)
        explorer = page.locator(".labkit-explorer", has=page.locator(".labkit-step:visible")).first
        explorer.scroll_into_view_if_needed()
        frame = explorer.locator(".labkit-frame svg g.graph")
        assert frame.count() == 1, "no lifetime graph in the step-through"
        details = explorer.locator(".labkit-details")
        before_details, before_svg = details.text_content(), frame.inner_html()
        assert "step 1 of" in before_details.lower(), before_details
        handle = explorer.locator(".labkit-step .noUi-handle").first
        handle.scroll_into_view_if_needed()
        handle.focus()
        page.keyboard.press("ArrowRight")
        page.wait_for_function("([el, old]) => el.textContent !== old",
                               arg=[details.element_handle(), before_details], timeout=60_000)
        assert "step 2 of" in details.text_content().lower()
        assert frame.inner_html() != before_svg, "the step moved, the graph did not"
        explorer.screenshot(path=str(ART / f"lite-{name}-graph.png"))
        if name == "10_after_the_rfc":
            side_by_side(page, name)

        # The prediction widget answers a guess made after the reveal.
        choice = "input[type=radio], input[type=checkbox]"
        predict = page.locator(".widget-vbox", has_text="Predict:").filter(has=page.locator(choice)).first
        predict.scroll_into_view_if_needed()
        predict.locator(choice).first.check()
        # the widget's reveal is redrawn, not edited: watch the widget, not the old reveal element
        page.wait_for_function("el => /You predicted it|You said/.test(el.textContent)",
                               arg=predict.element_handle(), timeout=60_000)
    finally:
        page.screenshot(path=str(ART / f"lite-{name}.png"), full_page=True)
    assert not outside, f"{len(outside)} requests left the site: {outside[:5]}"
    print(f"{name}: ran in {seconds} s")
