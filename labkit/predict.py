"""Predict before you run: a guess committed with a widget, compared with the kernel afterwards.

    guess = Predict("At cgroup_skb ingress the storage is ...", ["present", "absent", "refused"])
    ...                                   # run the scenario
    guess.reveal("present", why="the same skb carries it up the stack")

Where widgets do not run (an HTML export, a replay on GitHub) the question
and the kernel's answer still print as text.
"""

from __future__ import annotations

import html


class Predict:
    def __init__(self, question: str, options, *, multiple=False):
        import ipywidgets as w

        self.question = question
        self.options = list(options)
        self.multiple = multiple
        if multiple:
            self.choice = w.SelectMultiple(options=self.options, rows=len(self.options),
                                           layout=w.Layout(width="auto"))
        else:
            self.choice = w.RadioButtons(options=self.options, value=None, layout=w.Layout(width="auto"))
        self.result = w.HTML()
        self.widget = w.VBox([w.HTML(f"<b>Predict:</b> {html.escape(question)}"), self.choice, self.result])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def guess(self):
        return set(self.choice.value) if self.multiple else self.choice.value

    def reveal(self, truth, why=""):
        """Compare the guess with what the kernel did (truth: an option, or a set of options);
        ``self.correct`` keeps the outcome."""
        from IPython.display import HTML, display

        truth_set = set(truth) if self.multiple else truth
        said = self.guess
        if said in (None, set()):
            verdict = "You did not commit to a guess; the kernel's answer:"
            colour = "#555"
        elif said == truth_set:
            verdict, colour = "You predicted it.", "#2e7d32"
        else:
            shown = ", ".join(sorted(said)) if self.multiple else said
            verdict, colour = f"You said <i>{html.escape(str(shown))}</i>; the kernel says otherwise:", "#c62828"
        answer = ", ".join(sorted(truth_set)) if self.multiple else truth_set
        text = (f'<div style="border-left:6px solid {colour};padding:4px 10px"><b>{verdict}</b> '
                f"{html.escape(str(answer))}" + (f"<br>{html.escape(why)}" if why else "") + "</div>")
        self.result.value = text
        self.correct = said == truth_set
        display(HTML(f"<b>Predict:</b> {html.escape(self.question)}" + text))
