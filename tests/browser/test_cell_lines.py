"""%%bpf cells in JupyterLab in headless Chromium: the editor shows line
numbers, the C is highlighted as C, and the "cell line N" of a verifier
error and of a clang error is the line the editor's gutter numbers N.

Lesson 02's exercise cell (``%%bpf fixme``) as it is fails verification: it
runs after the lesson's start cells, live (replay cannot verify: without the
lab VM only the editor is checked). Then a line that does not compile is
typed into it, in the browser only: autosave is off and the notebooks on
disk stay as they were.
"""

import re
import subprocess

import pytest

from labkit import paths
from labkit.course.lesson import live_possible
from tests.browser.test_first_storage import ART, lab_server, page  # noqa: F401 - the page fixture
from tests.conftest import need

NOTEBOOK = "02_api_and_verifier"
CELL_TIMEOUT_MS = 300_000  # live: the first cell boots the lab VM


def _porcelain():
    return subprocess.run(["git", "status", "--porcelain", "notebooks"], cwd=paths.PROJECT,
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def server():
    """Live where it can be; in replay the editor is still checked, the runs skip."""
    before = _porcelain()
    with lab_server("live" if live_possible()[0] else "replay") as url:
        yield url
    assert _porcelain() == before, "the browser test changed what git sees in notebooks/"


def code_cell(pg, first_line):
    """The code cell whose editor starts with first_line."""
    cells = pg.locator(".jp-Notebook .jp-CodeCell")
    for i in range(cells.count()):
        cell = cells.nth(i)
        cell.scroll_into_view_if_needed()
        line = cell.locator(".cm-content .cm-line").first
        line.wait_for(timeout=20_000)
        if line.text_content().startswith(first_line):
            return cell
    raise AssertionError(f"no code cell starting with {first_line!r} in {NOTEBOOK}")


def run_cell(pg, cell, wait_for):
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-prompt").click()  # select it (command mode), then run it
    pg.keyboard.press("Control+Enter")
    cell.locator(wait_for).first.wait_for(timeout=CELL_TIMEOUT_MS)


def gutter(cell):
    """{editor line number: that line's text}, read from CodeMirror's DOM by position."""
    cell.scroll_into_view_if_needed()
    return cell.locator(".cm-editor").evaluate("""ed => {
        const lines = [...ed.querySelectorAll('.cm-content .cm-line')];
        const out = {};
        for (const g of ed.querySelectorAll('.cm-lineNumbers .cm-gutterElement')) {
            if (getComputedStyle(g).visibility === 'hidden' || !/^\\d+$/.test(g.textContent)) continue;
            const top = g.getBoundingClientRect().top;
            const line = lines.find(l => Math.abs(l.getBoundingClientRect().top - top) < 2);
            if (line) out[g.textContent] = line.textContent;
        }
        return out;
    }""")


def reported(cell):
    """(N, C text) of the error box's last "cell line N: text" line."""
    text = cell.locator(".labkit-error pre").text_content()
    hits = re.findall(r"^cell line (\d+)(?::\d+)?: (.*)$", text, re.M)
    assert hits, f"the error names no cell line:\n{text}"
    return int(hits[-1][0]), hits[-1][1], text


def span_class(cell, text):
    """The highlighting classes of the token that starts with text."""
    return cell.locator(".cm-content").evaluate("""(el, text) => {
        const s = [...el.querySelectorAll('.cm-line span')].find(s => s.textContent.startsWith(text));
        return s ? s.className : null;
    }""", text)


@pytest.mark.timeout(900)
def test_bpf_error_lines_match_the_editor(server, page):  # noqa: F811
    target = server.replace("00_index.ipynb", f"{NOTEBOOK}.ipynb")
    page.goto(target + "&reset")
    page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-Toolbar-kernelStatus, .jp-KernelStatus", timeout=60_000)
    page.wait_for_timeout(1500)  # the kernel connects
    ART.mkdir(parents=True, exist_ok=True)
    try:
        mode_cell = code_cell(page, "MODE = ")
        fixme = code_cell(page, "%%bpf fixme")

        # Line numbers on; C highlighting (#include is a directive, not a Python comment).
        lines = gutter(fixme)
        assert lines.get("1", "").startswith("%%bpf fixme"), lines
        assert lines.get("2") == '#include "lab_user.h"', lines
        python_comment = span_class(mode_cell, "# ")
        directive = span_class(fixme, "#include")
        assert python_comment and directive != python_comment, \
            f"#include is highlighted as a Python comment ({directive}): the cell is not C"

        ok, why = live_possible()
        need(ok, f"the error lines need the live lab (replay cannot verify): {why}", "./lab setup")
        run_cell(page, mode_cell, ".jp-InputPrompt:text-matches('[0-9]')")  # [1]: it ran
        run_cell(page, code_cell(page, "from labkit.course.lesson import start"), ".labkit-banner:has-text('LIVE')")

        # The verifier's complaint: v->token is written without a NULL check.
        run_cell(page, fixme, ".labkit-error")
        n, text, box = reported(fixme)
        assert "verifier rejected" in box and f"at cell line {n}:" in box, box
        assert text.strip() == "v->token = token;", box
        assert gutter(fixme)[str(n)].strip() == "v->token = token;", (n, gutter(fixme))

        # clang's complaint: a line typed under the #include, with a comment that
        # would open a Python string (the apostrophe) if the cell were not C.
        typed = "int oops = ;  // the skb's token"
        fixme.locator(".cm-content .cm-line").nth(1).click()
        page.keyboard.press("End")
        page.keyboard.press("Enter")
        page.keyboard.type(typed)
        page.keyboard.press("Escape")
        assert span_class(fixme, "// the skb's token") == python_comment  # a comment, the whole of it
        page.keyboard.press("Control+Enter")
        fixme.locator(".labkit-error:has-text('clang could not compile')").wait_for(timeout=CELL_TIMEOUT_MS)
        box = fixme.locator(".labkit-error pre").text_content()
        m = re.search(r"^cell line (\d+):\d+: error", box, re.M)
        assert m, box
        assert m.group(1) == "3" and gutter(fixme)["3"].strip() == typed, (box, gutter(fixme))
    finally:
        page.screenshot(path=str(ART / "cell_lines.png"), full_page=True)
