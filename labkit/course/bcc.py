"""A bcc cell: your bcc program traces the lab kernel while a scenario runs.

``lab.bcc(C_TEXT, {"skb_scrub_packet": "on_scrub"}, during=("netns", {"path": "veth"}))``
starts the program in the lab VM with Debian's bcc (``python3-bpfcc``; the
kernel headers come from the kernel itself, ``CONFIG_IKHEADERS``), waits
while it compiles (about 30 s under TCG, with a progress bar), runs the
scenario, stops the program and returns what it printed with
``bpf_trace_printk()`` next to what the lab's observer logged. A line that
names (``skb=%llx``) an sk_buff the observer followed, while it followed it,
is marked as the lesson's packet: the kernel sends packets of its own on the
same links (IPv6 neighbour discovery when they come up) and clones skbs while
the lab sets the scenario up, and those are the other lines. A Ctrl-C stops the program in the VM (its probes go with it).
"""

from __future__ import annotations

import html
import json
import re
import signal
import time
from dataclasses import dataclass, field

from labkit import paths
from labkit.errors import LabError
from labkit.runtime.session import Interrupted

SYSTEM_PYTHON = "/usr/bin/python3"
COMPILE_TIMEOUT = 240.0


@dataclass
class BccTrace:
    lines: list = field(default_factory=list)   # (seconds, comm, message)
    compile_s: float | None = None
    warnings: int = 0
    log: object = None                          # the scenario's EventLog
    note: str = ""
    mono: bool = False                          # line times are CLOCK_MONOTONIC, as the log's t0_ns

    def packets(self) -> list:
        """For each line: the lesson's packet number it belongs to, or None (see the module's doc)."""
        return [lesson_packet(m, t if self.mono else None, self.log) for t, _, m in self.lines]

    def _repr_html_(self):
        if self.note:
            return f"<i>{html.escape(self.note)}</i>"
        marks = self.packets()
        ours_style = ' style="background:#e8f5e9;font-weight:bold"'
        rows = "".join(f"<tr{ours_style if n else ''}><td>{t:.6f}</td><td>{html.escape(c)}</td>"
                       f"<td><code>{html.escape(m)}</code></td><td>{f'packet {n}' if n else ''}</td></tr>"
                       for (t, c, m), n in list(zip(self.lines, marks))[:200])
        scrubs = [e for e in self.log if e["kind"] == "scrub"] if self.log is not None else []
        ours = sum(1 for n in marks if n)
        return (f"<p>bcc compiled and attached in <b>{self.compile_s} s</b> ({self.warnings} lines of compiler "
                f"warnings about the kernel headers hidden) and printed {len(self.lines)} lines while the scenario "
                f"ran; the lab's observer logged {len(scrubs)} scrub(s) in the same run.</p>"
                f"<p>The <b>{ours} highlighted line(s)</b> are the lesson's packet: the same sk_buff address the "
                "observer followed for that packet, at the time it followed it. The other lines are other skbs: "
                "packets the kernel sends on its own on the same links (IPv6 neighbour discovery and MLD reports "
                "when the links come up, from kworker threads) and clones made while the lab's worker (task "
                "python) set the scenario up.</p>"
                f"<table><tr><th>time (s)</th><th>task</th><th>bpf_trace_printk</th><th>lesson's packet</th></tr>"
                f"{rows}</table>")

    def __str__(self):
        if self.note:
            return self.note
        return "\n".join(f"{t:.6f} {c} {m}" + (f"   <- the lesson's packet {n}" if n else "")
                         for (t, c, m), n in zip(self.lines, self.packets()))


SKB_RE = re.compile(r"\bskb=(?:0x)?([0-9a-fA-F]{8,16})\b")
SLACK_S = 0.002  # a kprobe and the observer's own probe on the same call are microseconds apart


def lesson_packet(msg: str, t_s, log):
    """The lesson's packet a trace line belongs to: it names an skb the observer followed for that
    packet and (when t_s, CLOCK_MONOTONIC seconds, is given and the log has its t0_ns) it was
    printed while the observer followed that skb; else None."""
    m = SKB_RE.search(msg)
    if m is None or log is None:
        return None
    addr = int(m.group(1), 16)
    t0 = log.header.get("t0_ns")
    spans = {}  # packet -> (first, last) time of the events for this skb, in seconds
    for e in log:
        if e.get("skb") and e.get("packet") and int(e["skb"], 16) == addr:
            lo, hi = spans.get(e["packet"], (e["t_us"], e["t_us"]))
            spans[e["packet"]] = (min(lo, e["t_us"]), max(hi, e["t_us"]))
    for packet, (lo, hi) in sorted(spans.items()):
        if t_s is None or t0 is None:
            return packet
        if t0 / 1e9 + lo / 1e6 - SLACK_S <= t_s <= t0 / 1e9 + hi / 1e6 + SLACK_S:
            return packet
    return None


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
    stage = "while it compiled"
    try:
        ready = _await(out, lambda m: m["ev"] in ("ready", "error"), timeout, bar, lab)
        if ready["ev"] == "error":
            raise LabError(f"bcc could not load the program: {ready['error']}",
                           fix=f"fix the C text; the compiler's messages are in {out}.log")
        bar.done(f"compiled and attached in {ready['compile_s']} s")
        stage = "while the scenario ran"
        log = lesson.run_scenario(sc)  # a Ctrl-C in there: the run tears down and raises Interrupted
        time.sleep(0.5)  # let the last trace lines reach the pipe
        lab.chan.send({"op": "signal", "id": cid, "sig": int(signal.SIGINT)})
        _await(out, lambda m: m["ev"] == "done", 30.0, None, lab)
    except KeyboardInterrupt:
        bar.stopped("interrupted: bcc stopped")
        raise Interrupted(f"bcc: interrupted {stage}; the program was stopped in the lab VM and its probes went "
                          "with it", fix="run the cell again") from None
    finally:
        try:
            lab.chan and lab.chan.send({"op": "kill", "id": cid})
        except OSError:
            pass
    msgs = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    chatter_log = out.with_name(out.name + ".log")  # bcc_run.py's stdout and stderr
    chatter = chatter_log.read_text(errors="replace") if chatter_log.exists() else ""
    lines = [(m["ts"], m["comm"], m["msg"]) for m in msgs if m["ev"] == "trace"]
    return BccTrace(lines, ready["compile_s"], sum("warning:" in ln for ln in chatter.splitlines()), log,
                    mono=any(m["ev"] == "clock" and m.get("clock") == "mono" for m in msgs))


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

    def stopped(self, text):
        if self.w is not None:
            self.w.bar_style = "warning"
            self.label.value = text

    def done(self, text):
        if self.w is not None:
            self.w.value = self.w.max
            self.w.bar_style = "success"
            self.label.value = text
        else:
            (self.say or print)(text)
