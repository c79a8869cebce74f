"""Predictions: the verdict follows the widget after the reveal (a Run All reveals before
anyone clicks), a multiple choice says it takes several answers and an empty answer reads as
such, and a reveal takes only a fact asked of a log."""

import pytest

from labkit.course import facts
from labkit.course.predict import NONE, Predict


def fact(value):
    return facts.Fact("state_at", {}, {"": "notebooks/data/x.jsonl"}, value, ["seen"])


def test_a_click_after_the_reveal_gets_its_verdict():
    g = Predict("q?", ["present", "absent", "refused"])
    g.reveal(fact("refused"))
    assert "did not commit" in g.result.value
    g.choice.value = "refused"
    assert "You predicted it." in g.result.value and g.correct
    g.choice.value = "absent"
    assert "kernel says otherwise" in g.result.value and not g.correct


def test_multiple_choice_takes_several_and_an_empty_answer_says_none():
    g = Predict("which?", ["gre", "ipip", "vxlan"], multiple=True)
    assert "Tick every one" in g.widget.children[0].value
    g.boxes[0].value = True
    g.boxes[1].value = True
    g.reveal(fact(set()))
    assert f"kernel says otherwise:</b> {NONE}" in g.result.value
    for b in g.boxes:
        b.value = False
    assert "You predicted it." in g.result.value


def test_a_guess_right_elsewhere_is_told_so():
    g = Predict("costlier here?", ["a", "b"])
    g.choice.value = "b"
    g.reveal(fact("a"), elsewhere={"native hardware": "b"})
    assert "On native hardware you would be right" in g.result.value


def test_reveal_refuses_a_bare_answer():
    with pytest.raises(TypeError, match="facts.ask"):
        Predict("q?", ["x"]).reveal("x")
