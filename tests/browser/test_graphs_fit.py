"""Lesson 04 in JupyterLab (headless Chromium, replay: no VM needed): its
graphs fit the output's width (the topology is wider than the output at its
own size), each lifetime graph is shown once (its step-through), and
``lab.pick`` puts a new run in place of the last instead of under it.
Screenshot in artifacts/browser/.
"""

import re

import pytest

from tests.browser.helpers import ART, lab_server, page, run_all  # noqa: F401 - the page fixture

WIDTHS = ("e => [e.getBoundingClientRect().width, e.closest('.jp-OutputArea-output').getBoundingClientRect().width,"
          " e.getAttribute('width')]")


@pytest.fixture(scope="module")
def server():
    with lab_server("replay") as url:
        yield url


@pytest.mark.timeout(600)
def test_tunnels_graphs_fit_and_pick_replaces(server, page):  # noqa: F811
    run_all(page, server, "04_tunnels", "replay", ".labkit-check")
    topology = page.locator(".labkit-graph svg").first
    topology.scroll_into_view_if_needed()
    width, room, own = topology.evaluate(WIDTHS)
    own_px = float(re.match(r"[\d.]+", own)[0]) * 4 / 3  # dot's size in pt
    assert own_px > room, f"the topology ({own_px:.0f} px) fits anyway: this checks nothing"
    assert 0 < width <= room + 1, f"the topology is {width} px wide in a {room} px output"

    static = page.locator(".jp-RenderedSVG img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    assert not [s for s in static if "legend" in s], "a graph shown as a static copy too"
    for width, room, _ in page.locator(".labkit-frame svg").evaluate_all(f"els => els.map({WIDTHS})"):
        assert width <= room + 1, f"a step-through's graph is {width} px wide in a {room} px output"

    run = page.locator(".jp-OutputArea-output:has(button:has-text('Run'))").first
    run.scroll_into_view_if_needed()
    assert run.locator(".labkit-explorer").count() == 1
    assert "kind=geneve" in run.locator(".labkit-explorer h4").first.text_content()
    run.locator("select").first.select_option("vxlan")
    run.locator("button:has-text('Run')").click()
    run.locator(".labkit-explorer h4:has-text('kind=vxlan')").wait_for(timeout=60_000)
    assert run.locator(".labkit-explorer").count() == 1, "the new run stacked under the old one"
    assert run.locator(".labkit-frame svg g.graph").count() == 1
    page.screenshot(path=str(ART / "04_tunnels-pick.png"))
