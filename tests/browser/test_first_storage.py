"""JupyterLab in headless Chromium (Playwright, Debian's chromium): open
01_first_storage, run all cells, and check the lifetime graph and the
step-through work in a real browser. The screenshot is kept in
artifacts/browser/. The server and page come from tests/browser/helpers.py.
"""

import pytest

from tests.browser.helpers import ART, CHROMIUM, lab_server, page, run_all  # noqa: F401 - shared; page a fixture


@pytest.fixture(scope="module")
def server():
    with lab_server() as url:
        yield url


@pytest.mark.timeout(900)
def test_first_storage_runs_in_the_browser(server, page):
    # The exercise check is the last output: everything above has run by then.
    run_all(page, server, "01_first_storage", "live", ".labkit-check")

    # The lifetime graph, once: in the step-through, with no static copy of it (its static HTML is only
    # for where widgets do not run), no wider than the output.
    static = page.locator(".jp-RenderedSVG img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    lifetime = [s for s in static if s.startswith("data:image/svg+xml") and "legend" in s and "skb%231" in s]
    assert not lifetime, f"{len(lifetime)} static copies of a lifetime graph"
    explorer = page.locator(".labkit-explorer").first
    explorer.scroll_into_view_if_needed()
    frame = explorer.locator(".labkit-frame svg g.graph")
    assert frame.count() == 1
    width, room = explorer.locator(".labkit-frame svg").evaluate(
        "e => [e.getBoundingClientRect().width, e.closest('.jp-OutputArea-output').getBoundingClientRect().width]")
    assert 0 < width <= room + 1, f"the graph is {width} px wide in a {room} px output"
    details = explorer.locator(".labkit-details")
    before_details, before_svg = details.text_content(), frame.inner_html()
    assert "step 1 of" in before_details.lower(), before_details
    assert explorer.locator(".labkit-step .widget-readout").first.text_content().strip() == "1"  # as the pane says

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
