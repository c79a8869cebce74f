"""Lessons 08 and 09 in JupyterLab in headless Chromium, live and in replay:
run all cells, then check the pictures the lesson is about are on the page
(08: lifetime graphs with the kernel's keep/copy notes; 09: the cost chart
and tables). Screenshots go to artifacts/browser/.
"""

import html
import re
import urllib.parse

import pytest

from tests.browser.helpers import lab_server, page, run_all  # noqa: F401 - the page fixture


@pytest.fixture(scope="module", params=["live", "replay"])
def server(request):
    with lab_server(request.param) as url:
        yield request.param, url


def static_svgs(page):
    srcs = page.locator(".jp-RenderedSVG img").evaluate_all("els => els.map(e => e.getAttribute('src'))")
    return [urllib.parse.unquote(s) for s in srcs if s and s.startswith("data:image/svg+xml")]


def step_through_svgs(page):
    """The step-throughs' graphs: (SVG, its width, its output's width) each."""
    return page.locator(".labkit-frame svg").evaluate_all(
        "els => els.map(e => [e.outerHTML, e.getBoundingClientRect().width, "
        "e.closest('.jp-OutputArea-output').getBoundingClientRect().width])")


@pytest.mark.timeout(900)
def test_beyond_the_rfc_in_the_browser(server, page):  # noqa: F811
    mode, url = server
    run_all(page, url, "08_beyond_the_rfc", mode, ".labkit-check")
    static = [s for s in static_svgs(page) if "legend" in s and "skb#1" in s]
    assert not static, f"{len(static)} static copies of lifetime graphs: each is shown once, as its step-through"
    frames = step_through_svgs(page)
    graphs = [html.unescape(s) for s, _, _ in frames if "legend" in s and "skb#1" in s]
    assert len(graphs) >= 4, f"{len(graphs)} lifetime graphs in {len(frames)} step-throughs"
    wide = [(w, room) for _, w, room in frames if w > room + 1]
    assert not wide, f"graphs wider than their output (px): {wide}"
    text = "\n".join(graphs)
    # the tracepoints drawn: a copy to a clone, kept and dropped scrubs, and the flags in the titles;
    # a scrub that keeps storage_a says so in the legend
    for needle in ("copied", "to the clone (BPF_F_CLONE)", "storage_a kept", "storage_a dropped",
                   "BPF_F_SKB_KEEP_TUNNEL", "BPF_F_SKB_KEEP_NETNS", "keeps storage_a (BPF_F_SKB_KEEP_TUNNEL"):
        assert needle in text, f"no {needle!r} in the lesson's graphs"
    out = page.locator(".jp-OutputArea-output").all_text_contents()  # also cells scrolled out of view
    assert any(re.search(r"keep_tunnel\+keep_netns\s+last seen at cgroup_skb ingress", t) for t in out), \
        "the tunnel table does not show both flags carrying storage to the socket"


@pytest.mark.timeout(900)
def test_what_it_costs_in_the_browser(server, page):  # noqa: F811
    mode, url = server
    run_all(page, url, "09_what_it_costs", mode,
            ".jp-OutputArea-output:has-text('skb storage (RFC) create+write')")
    charts = [s for s in static_svgs(page) if "labkit-cost" in s]
    assert charts, "no cost chart"
    for label in ("skb storage, plain: create+write", "skb storage, optimised: create+write", "hash side-stash: cleanup"):
        assert label in charts[0], f"no {label!r} bar"
    tables = page.locator(".labkit-cost-table")
    assert tables.count() == 3  # the costs, BPF_PROG_TEST_RUN, the packet rates
    assert "BPF_PROG_TEST_RUN" in tables.nth(1).text_content()
    assert "1000 kpps" in tables.nth(2).text_content()
    if mode == "replay":
        assert page.locator(".labkit-banner:has-text('RECORDED')").count() == 1
