"""Lesson 05's bcc cell on the real lab VM: a Ctrl-C while bcc compiles stops it in the VM (no
process, no probe left) and says so in one line; the cell run again traces the scenario, and the
trace marks the lines that belong to the lesson's packet."""

import json
import os
import re
import signal
import threading

import nbformat
import pytest

from labkit import paths
from labkit.runtime.session import Interrupted

DURING = ("netns", {"path": "veth"})
PROBES = {"skb_scrub_packet": "on_scrub", "skb_clone": "on_clone"}


def lesson_program():
    nb = nbformat.read(paths.PROJECT / "notebooks" / "05_netns_crossing.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    return re.search(r'BCC_PROGRAM = r"""(.*?)"""', text, re.S).group(1)


@pytest.fixture
def lesson(vm_ready):
    from labkit.course.lesson import Lesson

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    les = Lesson("live").start(say=lambda m: None)
    try:
        yield les
    finally:
        les.close()
        signal.signal(signal.SIGINT, old)


def bcc_left(lab) -> str:
    res = lab.run(["sh", "-c", "pgrep -f '[b]cc_run[.]py'; grep -c . /sys/kernel/tracing/kprobe_events; "
                   "ls /sys/bus/event_source/devices/kprobe >/dev/null && echo pmu"], cwd=paths.PROJECT, timeout=60)
    return res.out


def test_interrupting_the_bcc_compile_then_running_it_again(lesson):
    program = lesson_program()
    timer = threading.Timer(8.0, os.kill, (os.getpid(), signal.SIGINT))  # bcc compiles for ~30 s under TCG
    timer.start()
    try:
        with pytest.raises(Interrupted) as err:
            lesson.bcc(program, PROBES, during=DURING, say=lambda m: None)
    finally:
        timer.cancel()
    assert "interrupted while it compiled" in err.value.message and err.value.fix == "run the cell again"
    assert "\n" not in str(err.value)
    left = bcc_left(lesson.session.lab).split()
    assert left == ["0", "pmu"], f"bcc left a process or a kprobe event: {left}"

    trace = lesson.bcc(program, PROBES, during=DURING, say=lambda m: None)
    scrubs = [(t, m) for t, _, m in trace.lines if m.startswith("skb_scrub_packet")]
    assert scrubs, str(trace)
    assert trace.mono  # trace times on the log's clock: lines are matched by address and time
    marks = trace.packets()
    ours = [line for line, n in zip(trace.lines, marks) if n == 1]
    assert any(m.startswith("skb_scrub_packet") and "xnet=1" in m for _, _, m in ours), str(trace)
    # the observer's scrub of packet 1 is at the address a marked line names
    addr = {e["skb"] for e in trace.log if e["kind"] == "scrub" and e.get("packet") == 1}
    assert any(int(a, 16) == int(re.search(r"skb=(\w+)", m).group(1), 16) for a in addr for _, _, m in ours)
    assert "the lesson's packet 1" in str(trace) and "highlighted" in trace._repr_html_()
    json.dumps(marks)  # plain data
