"""A lab error in a notebook: a box with what failed, the details and the fix, not a traceback.

The lesson's setup cell (``labkit.course.lesson.start``) calls ``install()``, which
registers an IPython custom exception handler: a ``LabError`` raised from any
cell (a benchmark that failed, bcc, a ``ScenarioError``, a device that is
not there) is shown as one styled box; a run that was interrupted and
cleaned up after itself (``labkit.runtime.session.Interrupted``, and a Ctrl-C that
lands anywhere inside labkit) as a short note that says to run the cell
again. A Ctrl-C in the learner's own code keeps IPython's usual traceback.

What a box is, for tools that read executed notebooks: one ``display_data``
output with ``text/html`` (the box), ``text/plain`` (the same as text) and
the metadata ``{"labkit_error": {"ename", "message", "fix", "details",
"interrupted"}}``. No ``error`` output is written, but the cell still
failed: its execute reply has status "error" with the exception's name, so
a notebook run stops there as it would on a traceback.
"""

from __future__ import annotations

import html
import os

from labkit.errors import LabError

_LABKIT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # labkit/, every subpackage
ERROR_STYLE = "border-left:6px solid #c62828;background:#ffebee;padding:6px 10px;margin:4px 0"
NOTE_STYLE = "border-left:6px solid #f57f17;background:#fff8e1;padding:6px 10px;margin:4px 0"
PRE_STYLE = "margin:4px 0;max-height:24em;overflow:auto;white-space:pre-wrap"
INTERRUPTED_FIX = "run the cell again"


class LiveOnly(LabError):
    """Something that needs the lab kernel was asked for in replay mode."""


def banner(bg, fg, tag, text) -> str:
    """A lesson's coloured banner (LIVE, REPLAY, RECORDED, ...): tag in bold, then the text (HTML)."""
    return (f'<div class="labkit-banner" style="background:{bg};border-left:6px solid {fg};padding:6px 10px;'
            f'margin:4px 0;font-family:sans-serif"><b style="color:{fg}">{tag}</b> &nbsp;{text}</div>')


def is_interrupted(exc) -> bool:
    from labkit.runtime.session import Interrupted

    return isinstance(exc, (Interrupted, KeyboardInterrupt))


def info(exc) -> dict:
    """What the box shows, as data (the output's ``labkit_error`` metadata)."""
    from labkit.errors import LabError

    if isinstance(exc, LabError):
        message, fix, details = exc.message, exc.fix, exc.details or ""
    else:  # a Ctrl-C inside lab work
        where = getattr(exc, "labkit_where", None)
        message = "interrupted" + (f" in {where}" if where else "") + "; the lab stopped that step and removed " \
                  "what it had started"
        fix, details = INTERRUPTED_FIX, ""
    return {"ename": type(exc).__name__, "message": message, "fix": fix or "", "details": details.rstrip(),
            "interrupted": is_interrupted(exc)}


def text(exc) -> str:
    i = info(exc)
    out = f"{i['ename']}: {i['message']}"
    if i["fix"]:
        out += f"\nFix: {i['fix']}"
    if i["details"]:
        out += "\n" + "\n".join("  " + line for line in i["details"].splitlines())
    return out


def box_html(exc) -> str:
    """The box: the error's name and message, the fix, the details (scrolling when long)."""
    i = info(exc)
    if i["interrupted"]:
        tag, style = "Interrupted", NOTE_STYLE
        head = f"<b style='color:#e65100'>{tag}</b> &nbsp;{html.escape(i['message'])}"
    else:
        style = ERROR_STYLE
        head = f"<b style='color:#c62828'>{html.escape(i['ename'])}</b> &nbsp;{html.escape(i['message'])}"
    parts = [f'<div class="labkit-error" style="{style};font-family:sans-serif">', f"<div>{head}</div>"]
    if i["fix"]:
        parts.append(f"<div style='margin-top:4px'><b>Fix:</b> {html.escape(i['fix'])}</div>")
    if i["details"]:
        parts.append(f"<pre style='{PRE_STYLE}'>{html.escape(i['details'])}</pre>")
    parts.append("</div>")
    return "".join(parts)


def show(exc):
    """Display exc as the box, with its metadata."""
    from IPython.display import display

    display({"text/html": box_html(exc), "text/plain": text(exc)}, raw=True, metadata={"labkit_error": info(exc)})


def _labkit_frame(tb):
    """The first labkit function a traceback went through, the one the cell called
    (``Lesson.bench``), or None."""
    while tb is not None:
        code = tb.tb_frame.f_code
        path = os.path.abspath(code.co_filename)
        if path.startswith(_LABKIT + os.sep) and not path.endswith(os.sep + "errbox.py"):
            return getattr(code, "co_qualname", code.co_name)
        tb = tb.tb_next
    return None


def handler(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler (``set_custom_exc``): the box instead of a traceback.
    A KeyboardInterrupt outside labkit (your own loop) gets IPython's usual traceback."""
    if isinstance(value, KeyboardInterrupt):
        where = _labkit_frame(tb)
        if where is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return []
        value.labkit_where = where
    show(value)
    return []


def install(shell=None):
    """Show every LabError (and a Ctrl-C inside labkit) of this IPython as a box; a no-op outside IPython."""
    from labkit.errors import LabError

    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        shell = get_ipython()
    if shell is None:
        return None
    shell.set_custom_exc((LabError, KeyboardInterrupt), handler)
    return shell
