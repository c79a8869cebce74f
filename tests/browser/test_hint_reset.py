"""Lesson 01's exercise in JupyterLab (headless Chromium, replay: no VM needed):
the hint cell's button shows the hint, then where the solution is; the exercise
cell, edited and then replaced by ``coach.reset("01")``, gets the lesson's
committed starter back in its editor, even though the learner's copy of the
notebook had a different one. Screenshot in artifacts/browser/.
"""

import time

import nbformat
import pytest

from labkit.course import coach
from tests.browser.helpers import ART, lab_server, open_notebook, page  # noqa: F401 - the page fixture

OLD = "%%bpf stamp\n/* an earlier attempt, saved in the learner's copy */\n"


def edit_the_copy(root):
    """The learner's copy of 01 holds their own attempt: reset must not take it as the starter."""
    path = root / "01_first_storage.ipynb"
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if "exercise" in c.metadata.get("tags", [])).source = OLD
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def server():
    with lab_server("replay", copy_hook=edit_the_copy) as url:
        yield url


def code_cell(page, text, mark):
    """The code cell whose editor shows text (exactly one), found again by mark once its text changes."""
    cells = page.locator(".jp-Notebook .jp-CodeCell").filter(has=page.locator(".cm-content", has_text=text))
    assert cells.count() == 1, f"{cells.count()} cells show {text!r}"
    cells.first.evaluate("(el, mark) => el.setAttribute('data-labkit-test', mark)", mark)
    return page.locator(f".jp-Notebook .jp-CodeCell[data-labkit-test='{mark}']")


def editor_text(cell):
    return "\n".join(cell.locator(".cm-content .cm-line").all_inner_texts())


def squash(text):
    return " ".join(text.split())


def run_cell(page, cell):
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


@pytest.mark.timeout(300)
def test_hint_and_reset_in_the_browser(server, page):  # noqa: F811
    ART.mkdir(parents=True, exist_ok=True)
    open_notebook(page, server, "01_first_storage")
    try:
        # The hint: nothing shown until asked; a click shows it, a second where the solution is.
        hint_cell = code_cell(page, 'coach.hint("01")', "hint")
        hint_cell.scroll_into_view_if_needed()
        run_cell(page, hint_cell)
        button = hint_cell.locator(".labkit-hint button")
        button.wait_for(timeout=60_000)
        assert "Show a hint" in button.inner_text()
        assert hint_cell.locator(".labkit-hint-text").inner_text().strip() == ""
        button.click()
        shown = hint_cell.locator(".labkit-hint-text:has-text('Hint:')")
        shown.wait_for(timeout=20_000)
        assert squash(coach.HINTS["01"])[:60] in squash(shown.inner_text())
        assert "solutions/" not in shown.inner_text()
        button.click()
        pointer = hint_cell.locator(".labkit-solution-pointer")
        pointer.wait_for(timeout=20_000)
        assert "solutions/01_first_storage.ipynb" in pointer.inner_text()

        # The reset: the learner's copy opened with their old attempt in the exercise cell.
        exercise = code_cell(page, "an earlier attempt", "exercise")
        assert squash(editor_text(exercise)) == squash(OLD)
        exercise.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.type('coach.reset("01")')
        assert squash(editor_text(exercise)) == 'coach.reset("01")'
        page.keyboard.press("Shift+Enter")
        exercise.locator(".jp-OutputArea-output:has-text('is back in this cell')").wait_for(timeout=60_000)
        page.wait_for_function(
            "el => el.textContent.includes('TODO: create this packet')",
            arg=exercise.locator(".cm-content").element_handle(), timeout=20_000)
        # The editor fills in its lines as it lays them out (later on a busy machine): wait for all of them.
        want, deadline = squash(coach.starter("01")), time.monotonic() + 20
        while squash(editor_text(exercise)) != want and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert squash(editor_text(exercise)) == want
    finally:
        page.screenshot(path=str(ART / "hint-reset-01.png"), full_page=True)
