"""What the lessons use.

``lesson``     ``start()``: the lesson's setup cell, live or replay, and its ``Lesson``
``cost``       lesson 09's benchmark and its chart
``errbox``     a lab error in a notebook as a box, not a traceback; the lessons' banners
``predict``    predict before you run (``Predict``)
``facts``      what a reveal says, asked of the kernel's own record
``checking``   how an exercise is checked: ``Verdict``, ``@checked``, progress.jsonl
``exercises``  every exercise's check (``tunnels``: 04 and 08)
``coach``      a hint per exercise, and the starter back
``bpfcell``    the ``%%bpf`` cell;  ``bcc``: a bcc cell
``explorer``   step through a run (``Explorer``, ``SideBySide``)
``outputs``    what an executed lesson showed;  ``nbrun``, ``nbsession``: run lessons (tests)
``workcopy``   the learner's own copy of the lessons;  ``jupyter``: ``labkit open``
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "lesson": "start",
    "predict": "Predict",
    "explorer": "Explorer SideBySide",
})
