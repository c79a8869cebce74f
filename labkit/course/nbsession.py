"""A lesson taken the way a learner takes it: several Run Alls in one kernel.

    with LessonSession("notebooks/02_api_and_verifier.ipynb", "live") as s:
        first = s.run_all()                       # the starter, as committed
        s.paste("notebooks/solutions/02_api_and_verifier.ipynb")
        cut = s.run_all(interrupt=first.longest(), after=...)   # Ctrl-C during the longest cell
        second = s.run_all()                      # and once more to the end

Each ``run_all`` is one pass from the top, cell by cell, that stops at the
first cell that fails (as JupyterLab's Run All does) and says what the pass
showed: errors (tracebacks and the lab's error boxes), exercise verdicts,
prediction reveals, and each cell's time. An interrupt is a SIGINT to the
kernel process, which is what JupyterLab's stop button sends. The notebook
tests (tests/notebooks) use it; ``labkit.course.nbrun`` runs a notebook once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.course.facts import LOG_DIR_ENV
from labkit.course.outputs import reveals, scan


@dataclass
class Pass:
    errors: list = field(default_factory=list)
    checks: list = field(default_factory=list)
    reveals: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)  # cell index -> s
    stopped_at: int | None = None  # the cell that failed (the pass ran no further)
    interrupted: int | None = None  # the cell the interrupt landed in, when it did

    def longest(self):
        """The index of the cell that took longest."""
        return max(self.seconds, key=self.seconds.get) if self.seconds else None


def solution_cells(path, lesson_cells) -> list:
    """For each of the lesson's exercise cells, the solution's cell that starts with the same line."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in lesson_cells:
        head = cell.source.split("\n", 1)[0]
        match = [c.source for c in nb.cells if c.cell_type == "code" and c.source.split("\n", 1)[0] == head]
        if len(match) != 1:
            raise ValueError(f"{Path(path).name}: {len(match)} cells start like the exercise cell {head!r}")
        out += match
    return out


class LessonSession:
    def __init__(self, path, mode, *, timeout=600, log_dir=None):
        import nbformat

        self.path = Path(path)
        self.nb = nbformat.read(self.path, as_version=4)
        self.mode = mode
        self.timeout = timeout
        self.log_dir = log_dir
        self.passes = []
        self._env = {}

    def __enter__(self):
        from nbclient import NotebookClient

        self._env = {k: os.environ.get(k) for k in ("LABKIT_MODE", LOG_DIR_ENV)}
        os.environ["LABKIT_MODE"] = self.mode  # the kernel inherits it
        if self.log_dir:
            os.environ[LOG_DIR_ENV] = str(self.log_dir)
        self.client = NotebookClient(self.nb, timeout=self.timeout, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(self.path.parent)}})
        self._kernel = self.client.setup_kernel()
        self._kernel.__enter__()
        return self

    def __exit__(self, *exc):
        try:
            self._kernel.__exit__(*exc)
        finally:
            for k, v in self._env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return False

    def exercise_cells(self):
        return [c for c in self.nb.cells if "exercise" in c.metadata.get("tags", [])]

    def paste(self, solution):
        """Put the solution notebook's version of each exercise cell in its place (a learner who solved it)."""
        cells = self.exercise_cells()
        for c, src in zip(cells, solution_cells(solution, cells)):
            c.source = src

    def save(self, path):
        """Keep the notebook as the last pass left it."""
        import nbformat

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(self.nb, path)

    def _interrupt_later(self, delay):
        pid = self.client.km.provisioner.process.pid
        timer = threading.Timer(delay, os.kill, (pid, signal.SIGINT))
        timer.start()
        return timer

    def run_all(self, interrupt=None, after=1.0) -> Pass:
        """One Run All; with interrupt=i, a Ctrl-C ``after`` seconds into cell i (the pass stops there)."""
        p = Pass()
        for i, cell in enumerate(self.nb.cells):
            if cell.cell_type != "code":
                continue
            timer = self._interrupt_later(after) if i == interrupt else None
            t0 = time.monotonic()
            try:
                self.client.execute_cell(cell, i)
            finally:
                if timer:
                    timer.cancel()
            p.seconds[i] = round(time.monotonic() - t0, 2)
            errors, checks, _banner = scan([(i, cell.get("outputs", []))])
            p.checks += checks
            p.reveals += reveals([(i, cell.get("outputs", []))])
            if i == interrupt and any(e.get("interrupted") for e in errors):
                p.interrupted = i
                errors = [e for e in errors if not e.get("interrupted")]
            p.errors += errors
            if errors or p.interrupted is not None:
                p.stopped_at = i
                break
        self.passes.append(p)
        return p
