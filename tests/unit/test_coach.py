"""Hints and resets: one hint per exercise, a nudge and not the answer, in a
hint cell of the lesson; the starter comes back from the committed lesson."""

import difflib

import nbformat
import pytest

from labkit import paths
from labkit.course import coach
from labkit.errors import LabError

NB = paths.PROJECT / "notebooks"


def lessons_with_exercises():
    out = {}
    for p in sorted(NB.glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        if any("exercise" in c.metadata.get("tags", []) for c in nb.cells):
            out[p.name[:2]] = (p, nb)
    return out


def test_every_exercise_has_a_hint_and_a_solution():
    lessons = lessons_with_exercises()
    assert sorted(lessons) == sorted(coach.HINTS)
    for ex in lessons:
        assert coach.solution_path(ex).exists()
        assert len(coach.HINTS[ex]) > 80


@pytest.mark.parametrize("ex", sorted(coach.HINTS))
def test_the_lesson_has_its_hint_cell_after_the_check(ex):
    path, nb = lessons_with_exercises()[ex]
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    hints = [i for i, t in enumerate(tags) if "hint" in t]
    assert len(hints) == 1, f"{path.name}: {len(hints)} hint cells"
    cell = nb.cells[hints[0]]
    assert "check" in tags[hints[0] - 1]
    assert [i for i, t in enumerate(tags) if "exercise" in t][0] < hints[0]
    assert cell.outputs == [] and cell.execution_count is None
    assert f'coach.hint("{ex}")' in cell.source and f'coach.reset("{ex}")' in cell.source


@pytest.mark.parametrize("ex", sorted(coach.HINTS))
def test_a_hint_is_not_the_answer(ex):
    """No line the solution adds to the starter is in the hint."""
    sol = nbformat.read(coach.solution_path(ex), as_version=4)
    answer = next(c.source for c in sol.cells if "solution" in c.metadata.get("tags", []))
    added = [line[1:].strip() for line in difflib.unified_diff(coach.starter(ex).splitlines(), answer.splitlines(),
                                                                lineterm="", n=0)
             if line.startswith("+") and not line.startswith("+++")]
    given = [x for x in added if len(x) >= 7]
    assert given, "the solution adds nothing?"
    for line in given:
        assert line not in coach.HINTS[ex], f"the hint gives away {line!r}"


def test_which_exercise():
    assert coach.lesson_of("01") == coach.lesson_of(1) == coach.lesson_of("01_first_storage") == "01"
    assert coach.lesson_of("notebooks/08_beyond_the_rfc.ipynb") == "08"
    for bad in ("07", "99", "stamp", ""):
        with pytest.raises(LabError):
            coach.lesson_of(bad)


def test_the_starter_is_the_committed_exercise_cell():
    path, nb = lessons_with_exercises()["05"]
    cell = next(c for c in nb.cells if "exercise" in c.metadata.get("tags", []))
    assert coach.starter("05") == cell.source and cell.source.startswith("table = {")
    assert coach.starter(1).startswith("%%bpf stamp\n") and "TODO" in coach.starter(1)


class FakeShell:
    def __init__(self):
        self.calls = []

    def set_next_input(self, text, replace=False):
        self.calls.append((text, replace))


def test_reset_replaces_the_running_cell(monkeypatch, capsys):
    import IPython

    shell = FakeShell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    coach.reset("03")
    assert shell.calls == [(coach.starter("03"), True)]
    assert "starter of exercise 03 is back" in capsys.readouterr().out


def test_reset_without_a_notebook_prints_the_starter(monkeypatch, capsys):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    coach.reset("06")
    assert capsys.readouterr().out.strip() == coach.starter("06").strip()


def test_the_hint_is_a_button_and_plain_text_elsewhere():
    h = coach.hint("04")
    bundle = h._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert coach.HINTS["04"] in data["text/plain"] and "solutions/04_tunnels.ipynb" in data["text/plain"]
    box = h.widget()
    button, out = box.children
    assert out.value == ""  # nothing until asked
    button.click()
    assert "Hint:" in out.value and "solutions/" not in out.value
    button.click()
    assert "solutions/04_tunnels.ipynb" in out.value and button.layout.display == "none"
