"""How an exercise is checked: a verdict (``Verdict``), shown in the notebook and carried in the
output's metadata (``labkit_check``), appended to the learner's ``progress.jsonl``; ``@checked``
turns a check function into one that says "not checked" in replay and turns lab errors into
verdicts; and the helpers every check uses (``cell_ready``, ``run_with``, ``reports``).
The checks themselves are in ``labkit.course.exercises`` and ``labkit.course.tunnels``."""

from __future__ import annotations

import html
import json
import os
import time
from dataclasses import dataclass, field, replace

from labkit import paths
from labkit.errors import LabError

PROGRESS = "progress.jsonl"
CHECKS = {}  # exercise -> check name, filled by @checked (the instructor view's columns)


@dataclass
class Verdict:
    exercise: str
    passed: bool | None  # None: not checked (replay)
    summary: str
    lines: list = field(default_factory=list)

    def _repr_html_(self):
        colour, mark = {True: ("#2e7d32", "passed"), False: ("#c62828", "not yet"),
                        None: ("#f57f17", "not checked")}[self.passed]
        body = "".join(f"<li>{html.escape(x)}</li>" for x in self.lines)
        return (f'<div class="labkit-check" data-passed="{self.passed}" style="border-left:6px solid {colour};'
                f'padding:6px 10px;margin:4px 0"><b style="color:{colour}">Check {html.escape(self.exercise)}: '
                f"{mark}</b> &mdash; {html.escape(self.summary)}<ul>{body}</ul></div>")

    def __str__(self):
        head = f"check {self.exercise}: {'passed' if self.passed else 'not checked' if self.passed is None else 'FAILED'}"
        return "\n  ".join([f"{head}: {self.summary}", *self.lines])


def show(v: Verdict) -> None:
    try:
        from IPython.display import HTML, display

        display(HTML(v._repr_html_()), metadata={"labkit_check": {"exercise": v.exercise, "passed": v.passed}})
    except ImportError:
        print(v)


def progress_path():
    return paths.cache_dir() / PROGRESS


def record(v: Verdict, check: str, mode: str) -> None:
    """Append the verdict to the learner's progress.jsonl (dir 0700, file 0600); never fails the check."""
    lesson = next((p.stem for p in paths.shipped("notebooks").glob(f"{v.exercise}_*.ipynb")), v.exercise)
    line = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lesson": lesson, "exercise": v.exercise,
            "check": check, "passed": v.passed, "summary": v.summary, "mode": mode}
    if os.environ.get("JPY_SESSION_NAME"):
        line["notebook"] = os.environ["JPY_SESSION_NAME"]
    path = progress_path()
    try:
        paths.private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines from two kernels never mix
        finally:
            os.close(fd)
    except OSError:
        pass  # the verdict is shown all the same


def checked(exercise):
    """Run a check function; replay and lab errors become verdicts, not tracebacks."""
    def wrap(fn):
        CHECKS[exercise] = fn.__name__

        def run(lab, *args, quiet=False, **kw):
            if not lab.live:
                v = Verdict(exercise, None, "this check runs your work on the lab kernel; this notebook is a replay",
                            [getattr(lab, "fallback", None) or
                             "open the live lab with ./lab open (or set MODE = 'live') and run the check there"])
            else:
                try:
                    v = fn(lab, *args, **kw)
                except LabError as exc:
                    v = Verdict(exercise, False, exc.message, [exc.fix] if exc.fix else [])
            record(v, fn.__name__, getattr(lab, "mode", "live" if lab.live else "replay"))
            if quiet:
                return v
            show(v)  # shown once; the verdict stays in the output's metadata
            return None
        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        return run
    return wrap


def cell_ready(exercise, cell, programs):
    if cell is None:
        return Verdict(exercise, False, "the exercise cell has not run", ["run the %%bpf cell above first"])
    if not cell.ok:
        return Verdict(exercise, False, f"your program did not get as far as the kernel ({cell.stage})",
                       (cell.error or "").splitlines()[:6])
    missing = [p for p in programs if p not in cell.programs]
    if missing:
        return Verdict(exercise, False, f"the cell has no program named {', '.join(missing)}",
                       [f"its programs: {', '.join(cell.programs) or 'none'}; keep the names from the starter"])
    return None


def run_with(lab, sc, attach, count=None):
    if count:
        sc = replace(sc, packets=tuple(replace(p, count=count) for p in sc.packets))
    return lab.run_scenario(lab.attached(sc, attach))


def reports(log, tag=None):
    return [e for e in log if e["kind"] == "report" and (tag is None or e.get("tag") == tag)]
