"""A bcc cell: your bcc program traces the lab kernel while a scenario runs.

``lab.bcc(C_TEXT, {"skb_scrub_packet": "on_scrub"}, during=("netns", {"path": "veth"}))``
starts the program in the lab VM with Debian's bcc (``python3-bpfcc``; the
kernel headers come from the kernel itself, ``CONFIG_IKHEADERS``), waits
while it compiles (about 30 s under TCG, with a progress bar), runs the
scenario, stops the program and returns what it printed with
``bpf_trace_printk()`` next to what the lab's observer logged.
"""

from __future__ import annotations

import html
import json
import signal
import time
from dataclasses import dataclass, field

from labkit import paths
from labkit.errors import LabError

SYSTEM_PYTHON = "/usr/bin/python3"
COMPILE_TIMEOUT = 240.0


@dataclass
class BccTrace:
    lines: list = field(default_factory=list)   # (seconds, comm, message)
    compile_s: float | None = None
    warnings: int = 0
    log: object = None                          # the scenario's EventLog
    note: str = ""

    def _repr_html_(self):
        if self.note:
            return f"<i>{html.escape(self.note)}</i>"
        rows = "".join(f"<tr><td>{t:.6f}</td><td>{html.escape(c)}</td><td><code>{html.escape(m)}</code></td></tr>"
                       for t, c, m in self.lines[:200])
        scrubs = [e for e in self.log if e["kind"] == "scrub"] if self.log is not None else []
        return (f"<p>bcc compiled and attached in <b>{self.compile_s} s</b> ({self.warnings} lines of compiler "
                f"warnings about the kernel headers hidden) and printed {len(self.lines)} lines while the scenario "
                f"ran; the lab's observer logged {len(scrubs)} scrub(s) in the same run.</p>"
                f"<table><tr><th>time (s)</th><th>task</th><th>bpf_trace_printk</th></tr>{rows}</table>")

    def __str__(self):
        return self.note or "\n".join(f"{t:.6f} {c} {m}" for t, c, m in self.lines)


def run(lesson, program: str, probes: dict, during, *, timeout=COMPILE_TIMEOUT, say=None) -> BccTrace:
    if not lesson.live:
        return BccTrace(note="bcc runs inside the live lab VM (./lab open); in replay this cell only shows "
                             "the program")
    lesson.start()
    name, params = during
    sc = lesson.scenario(name, **params)
    lab = lesson.session.lab
    work = lab.exchange_dir() / "bcc"  # the guest writes its trace here
    work.mkdir(parents=True, exist_ok=True)
    out = work / "out.jsonl"
    out.unlink(missing_ok=True)
    spec = work / "spec.json"
    spec.write_text(json.dumps({"program": program, "probes": probes, "out": str(out)}))
    cid = lab.spawn([SYSTEM_PYTHON, paths.GUEST_DIR / "bcc_run.py", spec], cwd=paths.PROJECT)
    bar = _Bar(say)
    try:
        ready = _await(out, lambda m: m["ev"] in ("ready", "error"), timeout, bar, lab)
        if ready["ev"] == "error":
            raise LabError(f"bcc could not load the program: {ready['error']}",
                           fix=f"fix the C text; the compiler's messages are in {out}.log")
        bar.done(f"compiled and attached in {ready['compile_s']} s")
        log = lesson.run_scenario(sc)
        time.sleep(0.5)  # let the last trace lines reach the pipe
        lab.chan.send({"op": "signal", "id": cid, "sig": int(signal.SIGINT)})
        _await(out, lambda m: m["ev"] == "done", 30.0, None, lab)
    finally:
        try:
            lab.chan and lab.chan.send({"op": "kill", "id": cid})
        except OSError:
            pass
    msgs = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    chatter_log = out.with_name(out.name + ".log")  # bcc_run.py's stdout and stderr
    chatter = chatter_log.read_text(errors="replace") if chatter_log.exists() else ""
    lines = [(m["ts"], m["comm"], m["msg"]) for m in msgs if m["ev"] == "trace"]
    return BccTrace(lines, ready["compile_s"], sum("warning:" in ln for ln in chatter.splitlines()), log)


def _await(out, want, timeout, bar, lab):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if out.exists():
            for line in out.read_text().splitlines():
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if want(m):
                    return m
        if not lab.alive():
            raise LabError("the lab VM stopped while bcc ran", fix="run the cell again (a new VM boots)")
        if bar:
            bar.tick(time.monotonic() - t0)
        time.sleep(0.5)
    raise LabError(f"bcc did not get there within {timeout:g} s", fix="run the cell again; under TCG bcc needs "
                   "about 30 s to compile")


class _Bar:
    """Progress while bcc compiles: a widget in a notebook, lines elsewhere."""

    def __init__(self, say):
        self.say = say
        self.w = None
        try:
            import ipywidgets as w
            from IPython import get_ipython
            from IPython.display import display

            if get_ipython() is not None:
                self.w = w.FloatProgress(min=0, max=35, description="bcc compiling", bar_style="info",
                                         style={"description_width": "initial"})  # the whole description
                self.label = w.Label("bcc compiles the program against the kernel's headers (about 30 s under TCG)")
                display(w.HBox([self.w, self.label]))
        except ImportError:
            pass
        self._last = 0

    def tick(self, s):
        if self.w is not None:
            self.w.max = max(self.w.max, s + 5)
            self.w.value = s
            self.label.value = f"bcc compiling: {s:.0f} s (about 30 s under TCG)"
        elif s - self._last >= 10:
            self._last = s
            (self.say or print)(f"bcc compiling: {s:.0f} s")

    def done(self, text):
        if self.w is not None:
            self.w.value = self.w.max
            self.w.bar_style = "success"
            self.label.value = text
        else:
            (self.say or print)(text)
