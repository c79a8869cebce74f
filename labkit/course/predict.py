"""Predict before you run: a guess committed with a widget, compared with the kernel afterwards.

    guess = Predict("At cgroup_skb ingress the storage is ...", ["present", "absent", "refused"])
    ...                                   # run the scenario
    guess.reveal(facts.ask("state_at", log, hook="cgroup_skb/ingress"),
                 answers={"present": "present", "absent": "absent", "refused": "refused"},
                 why="the same skb carries it up the stack")

The kernel's answer is a ``labkit.course.facts.Fact`` asked of the log the cell ran
(never of the learner's exercise), mapped to the question's options by
``answers``; the output carries the fact in its metadata (``labkit_reveal``)
so the notebook tests can ask it again of the same log. A multiple-choice
question whose answer is no option says so ("none of them").

The guess can change after the reveal (a Run All reveals before anyone
clicks): the verdict follows the widget. Where widgets do not run (an HTML
export, a replay on GitHub) the question and the kernel's answer still print
as text.
"""

from __future__ import annotations

import html

NONE = "none of them"


class Predict:
    def __init__(self, question: str, options, *, multiple=False):
        import ipywidgets as w

        self.question = question
        self.options = list(options)
        self.multiple = multiple
        self.truth = None
        self._why = ""
        self._elsewhere = {}
        self.correct = None
        if multiple:
            self.boxes = [w.Checkbox(value=False, description=o, indent=False, layout=w.Layout(width="auto"))
                          for o in self.options]
            self.choice = w.VBox(self.boxes)
            hint = "<br><i>Tick every one that applies (or none).</i>"
            for b in self.boxes:
                b.observe(self._changed, names="value")
        else:
            self.choice = w.RadioButtons(options=self.options, value=None, layout=w.Layout(width="auto"))
            self.choice.observe(self._changed, names="value")
            hint = ""
        self.result = w.HTML()
        self.widget = w.VBox([w.HTML(f"<b>Predict:</b> {html.escape(question)}{hint}"), self.choice, self.result])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def guess(self):
        if self.multiple:
            return {b.description for b in self.boxes if b.value}
        return self.choice.value

    def _changed(self, _change=None):
        if self.truth is not None:
            self.result.value = self._verdict_html()

    def _verdict_html(self):
        truth, said = self.truth, self.guess
        answer = (", ".join(sorted(truth)) or NONE) if self.multiple else truth
        native = [place for place, a in self._elsewhere.items() if a == said]
        if said is None:
            verdict, colour = "You did not commit to a guess; the kernel's answer:", "#555"
        elif said == truth:
            verdict, colour = "You predicted it.", "#2e7d32"
        elif native:
            verdict, colour = (f"On {html.escape(native[0])} you would be right; this lab kernel says:", "#e67700")
        else:
            shown = (", ".join(sorted(said)) or NONE) if self.multiple else said
            verdict, colour = f"You said <i>{html.escape(str(shown))}</i>; the kernel says otherwise:", "#c62828"
        self.correct = said == truth
        return (f'<div class="labkit-reveal" style="border-left:6px solid {colour};padding:4px 10px">'
                f"<b>{verdict}</b> {html.escape(str(answer))}"
                + (f"<br>{html.escape(self._why)}" if self._why else "") + "</div>")

    def reveal(self, fact, answers=None, why="", elsewhere=None):
        """Show the kernel's answer next to the guess.

        fact: a ``labkit.course.facts.Fact`` (its value, or each value in a set, mapped
        to an option by ``answers``; unmapped values are shown as they are).
        why: the explanation; the fact's own notes are added to it.
        elsewhere: {place: option} where a guess is right somewhere else
        (native hardware's figures), so a learner who knows them is told so."""
        from IPython.display import HTML, display

        from labkit.course.facts import Fact

        if not isinstance(fact, Fact):
            raise TypeError("reveal() takes a labkit.course.facts.Fact: ask the log (facts.ask), never the exercise")
        answers = dict(answers or {})
        if self.multiple:
            self.truth = {answers.get(v, v) for v in fact.value}
        else:
            self.truth = answers.get(fact.value, fact.value)
        self._why = "; ".join(x for x in [why, *fact.notes] if x)
        self._elsewhere = dict(elsewhere or {})
        self.result.value = self._verdict_html()
        truth = sorted(self.truth) if self.multiple else self.truth
        meta = {"question": self.question, "truth": truth, "shown": (", ".join(truth) or NONE) if self.multiple
                else truth, "fact": fact.meta(), "answers": [[k, v] for k, v in answers.items()]}
        display(HTML(f"<b>Predict:</b> {html.escape(self.question)}" + self.result.value),
                metadata={"labkit_reveal": meta})


def expected_truth(meta: dict):
    """What a reveal must read, from its metadata: its fact asked again of its source, mapped to the options."""
    from labkit.course.facts import again

    value = again(meta["fact"])
    answers = {(tuple(k) if isinstance(k, list) else k): v for k, v in meta["answers"]}
    if isinstance(value, list):
        return sorted({answers.get(v, v) for v in value})
    return answers.get(value, value)
