"""The progress bar shown while bcc compiles: its description is shown whole, not cut to 'bcc compi…'."""

import IPython
import IPython.display


def test_bcc_bar_description_is_not_cut(monkeypatch):
    from labkit.course import bcc as bcctrace

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())  # as in a notebook
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    bar = bcctrace._Bar(say=None)
    assert shown and bar.w is not None and bar.w.description == "bcc compiling"
    # ipywidgets gives a description a fixed width (80 px) unless told to fit it
    assert bar.w.style.description_width == "initial"
    bar.tick(12.0)
    assert "12 s" in bar.label.value
    bar.done("bcc compiled in 12 s")
    assert bar.w.bar_style == "success" and bar.label.value == "bcc compiled in 12 s"
