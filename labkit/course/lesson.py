"""A notebook's link to the lab: live on the lab VM, or replay from recordings.

Every lesson starts with::

    MODE = None                      # "live", "replay" or None (pick)
    from labkit.course.lesson import start
    lab = start(MODE)

The mode is chosen once per notebook: the ``MODE`` parameter, else
``$LABKIT_MODE``, else live where this machine can boot the lab VM and
replay where it cannot (Binder, a laptop without the kernel built). Live
runs scenarios on the lab kernel in a VM the lesson owns; replay reads the
recordings in ``notebooks/data/`` (made on that kernel with ``labkit
record --all``) and says so in a banner. Exercises need live: in replay
their checks say how to get it.

Where a workshop hub caps the lab VMs on the machine (``$LABKIT_VM_SLOTS``,
``labkit.vm.slots``), live holds a running slot for as long as its VM lives and
boots under a boot slot (waiting in the queue with progress); with no slot
free the notebook replays instead, with a banner saying why, and never hangs.
Re-running the setup cell closes the VM the last one started.
"""

from __future__ import annotations

import atexit
import html
import os
import sys
import time

from labkit import paths, tools
from labkit.course.cost import CostMixin
from labkit.course.errbox import LiveOnly, banner
from labkit.errors import LabError

ENV = "LABKIT_MODE"
MODES = ("live", "replay")
BOOT_WAIT = 600.0  # s in the boot queue before a notebook replays instead
# The designs lesson 10 shows side by side, and their titles.
DESIGN_TITLES = {"storage": "skb storage (the RFC)", "meta": "metadata buffer (on the list)",
                 "gated": "gated tracepoints + hash (the maintainers')"}
_last = None  # the Lesson the setup cell made last in this kernel


def live_possible() -> tuple[bool, str]:
    """(True, what runs) when this machine can boot the lab VM, else (False, what is missing)."""
    from labkit import kernel, tools

    if tools.in_browser():
        return False, "this is the browser (the lab's JupyterLite site), which has no lab VM"
    if not tools.which("qemu-system-x86_64"):
        return False, "QEMU is not installed (./lab setup)"
    try:
        kdir = kernel.kernel_path()
    except LabError as exc:
        return False, f"the lab kernel is not built ({exc.message}; ./lab setup)"
    if not (paths.bpf_build_dir() / "observe.bpf.o").exists():
        # A learner on a shared install compiles the lab's programs into
        # their own cache, once (a few seconds).
        if not tools.which("clang"):
            return False, "the lab's BPF programs are not built and clang is not installed (./lab setup)"
        from labkit.bpf import build as bpfbuild

        try:
            bpfbuild.build_all(kernel_dir=kdir)
        except LabError as exc:
            return False, f"the lab's BPF programs do not compile here ({exc.message})"
    return True, f"lab kernel in {kdir}"


def choose_mode(mode=None) -> tuple[str, str]:
    """(mode, why) from the parameter, else $LABKIT_MODE, else what the machine can do."""
    asked = mode or os.environ.get(ENV) or "auto"
    if asked not in MODES + ("auto",):
        raise LabError(f"unknown lab mode {asked!r}", fix="use MODE = 'live', 'replay' or None")
    ok, why = live_possible()
    if asked == "live" and not ok:
        raise LabError(f"live mode needs the lab VM, and {why}",
                       fix="run ./lab setup, or set MODE = 'replay' to use the recordings")
    if asked == "auto":
        return ("live" if ok else "replay"), why
    return asked, why if asked == "live" else ("asked for" if mode else f"{ENV}=replay")


def measure_clock(live: bool) -> str:
    """The clock a lesson that measures cost runs on (``start(MODE, clock="measure")``): "icount"
    (guest instructions, the same on any machine, and what the replay recording counts) wherever
    the lab VM is not KVM; "wall" (ns) live where it runs under KVM, whose ns are the hardware's."""
    if not live:
        return "icount"
    from labkit import kernel
    from labkit.vm.lab import choose_accel

    try:
        accel, _ = choose_accel(kernel.kernel_path())
    except LabError:
        return "icount"
    return "wall" if accel == "kvm" else "icount"


def running_slot():
    """This notebook's running slot (``labkit.vm.slots``): a free one, or the one the keeper of
    this user's spare VM holds (``labkit.vm.spare``), whose VM this notebook's Lab() then takes."""
    from labkit.vm import slots, spare

    try:
        return slots.running_slot()
    except slots.SlotsFull as exc:
        taken = spare.take_slot() if exc.kind == "mine" else None
        if taken is None:
            raise
        return taken


class Lesson(CostMixin):
    """The lab as one notebook sees it: ``run()`` a scenario, ``show()`` its log. clock: the lab VM's
    ("wall", "icount" to count guest instructions: ``labkit.vm.lab.Lab``; "measure": ``measure_clock``)."""

    def __init__(self, mode=None, clock="wall"):
        self.mode, self.why = choose_mode(mode)
        # "measure": a lesson that measures cost, icount wherever the lab VM is not KVM
        self.clock = measure_clock(self.live) if clock == "measure" else clock
        self.session = None
        self.started = None
        self.slot = None  # the running slot this notebook's VM holds (labkit.vm.slots)
        self.fallback = None  # why live fell back to replay, for the banner
        self._atexit = False
        if self.live:
            try:
                self.slot = running_slot()
            except LabError as exc:  # SlotsFull, or a cap the hub set up wrong
                self.fall_back(exc)

    def fall_back(self, exc: LabError):
        """Replay instead of live, because of exc (no VM slot free): the banner says so."""
        self.close()
        self.mode, self.why = "replay", exc.message
        self.fallback = (f"{exc.message}; this notebook replays recordings made on the lab kernel"
                         + (f"; {exc.fix}" if exc.fix else ""))

    @property
    def live(self) -> bool:
        return self.mode == "live"

    # -- the VM ---------------------------------------------------------------------

    def start(self, say=print):
        """Boot the VM (live): under a boot slot where the VMs are capped, waiting in the queue first.
        A full cap raises ``labkit.vm.slots.SlotsFull``; ``start()`` of the module falls back to replay."""
        if not self.live or self.session is not None:
            return self
        from labkit.runtime.session import Session
        from labkit.vm import slots

        t0 = time.monotonic()
        if self.slot is None:  # closed before: take a running slot again
            self.slot = running_slot()
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True
        try:
            with slots.boot_slot(progress=say, timeout=BOOT_WAIT):
                say("Starting the lab VM and its scenario worker (about a second from the warm snapshot; "
                    "10-15 s under TCG when it boots cold) ...")
                self.session = Session(clock=self.clock)
                self.session.start()
        except BaseException:
            self.close()
            raise
        self.started = time.monotonic() - t0
        return self

    def close(self):
        """Stop the VM and give its slot back (also at exit)."""
        if self.session is not None:
            try:
                self.session.close()
            finally:
                self.session = None
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    def _need_live(self, what):
        if not self.live:
            raise LiveOnly(f"{what} runs on the lab kernel; this notebook is in replay mode",
                           fix="open the live lab with ./lab open (or set MODE = 'live' where the VM can run)")
        self.start()

    # -- running --------------------------------------------------------------------

    def scenario(self, name, flags=None, design=None, **params):
        from labkit import scenarios

        return scenarios.get(name, flags=flags, design=design, **params)

    def run(self, name, *, attach=(), flags=None, design=None, **params):
        """Run the library scenario ``name`` (live) or read its recording (replay).

        attach: your programs (``cell.at(...)``), live only. flags: map
        flags for storage_a, e.g. "clone" or "keep_tunnel+keep_netns". design:
        who keeps the packet's token, "storage" (skb storage, the default),
        "meta" (the metadata buffer) or "gated" (a stash on the gated tracepoints)."""
        return self.run_scenario(self.attached(self.scenario(name, flags=flags, design=design, **params), attach))

    @staticmethod
    def attached(sc, attach):
        """sc with your programs added (a tc attach finds its namespace from the device)."""
        if not attach:
            return sc
        from dataclasses import replace

        from labkit.course.bpfcell import place

        return replace(sc, attach=tuple(sc.attach) + tuple(place(a, sc) for a in attach)).validate()

    def run_scenario(self, sc):
        """Run a Scenario live; in replay, read the recording of the library scenario it equals."""
        if self.live:
            from labkit.course.facts import keep

            self.start()
            return keep(self.session.run(sc), sc.name)
        if sc.attach:
            self._need_live(f"scenario {sc.name} with your programs")
        from labkit.runtime.events import EventLog
        from labkit.scenarios import recording_path

        flags = sc.map_flags.get("storage_a")
        path = recording_path(sc.name, sc.params, flags)
        if not path.exists() or self.scenario(sc.name, flags=flags, **sc.params).to_dict() != sc.to_dict():
            raise LiveOnly(f"there is no recording of {sc.name} {sc.params or ''}".strip(),
                           fix="run it live (./lab open), or record it there: labkit record --all")
        log = EventLog.load(path)
        log.header["replay"] = paths.shown(path)
        return log

    def load(self, obj, programs=None):
        """Load an object in the lab VM and unload it: the verifier's verdict."""
        self._need_live("loading a BPF program")
        return self.session.load(obj, programs)

    def bcc(self, program, probes, during, **kw):
        """Trace the lab kernel with a bcc program while the scenario ``during=(name, params)`` runs."""
        from labkit.course import bcc as bcctrace

        return bcctrace.run(self, program, probes, during, **kw)

    # -- showing --------------------------------------------------------------------

    def banner_html(self) -> str:
        if self.live:
            lab = self.session.lab if self.session else None
            what = (f"lab VM up: kernel {html.escape(lab.release or '?')}, {lab.accel}"
                    f"{' counting instructions' if lab.clock == 'icount' else ''}, "
                    f"booted in {lab.boot_seconds:.1f} s") if lab and lab.boot_seconds else "lab VM starts at the first run"
            return banner("#e8f5e9", "#2e7d32", "LIVE", f"Scenarios run on the real lab kernel. {what}.")
        rec = _recorded_on()
        if self.fallback:
            return banner("#fff8e1", "#f57f17", "REPLAY",
                        f"<b>{html.escape(self.fallback)}</b>. The recordings were made on {rec}.")
        live = ("<code>./lab open</code> in the lab's checkout on a Debian 12 machine (this page is its static "
                "site: Python runs in your browser, there is no VM behind it)") if tools.in_browser() \
            else "<code>./lab open</code>"
        return banner("#fff8e1", "#f57f17", "REPLAY",
                    "Every run below is a <b>recording</b> made on the real lab kernel " + rec +
                    f", not a live run. Exercises need the live lab: {live}.")

    def _repr_html_(self):
        return self.banner_html()

    def show(self, log, packet=None, title=None):
        """The lifetime graph's step-through, as one output: the widget where widgets run, the whole
        graph as static HTML where they do not (an HTML export, GitHub; ``labkit.course.explorer``)."""
        from IPython.display import HTML, display

        from labkit.course.explorer import Explorer

        if log.header.get("replay"):
            display(HTML(banner("#fff8e1", "#f57f17", "REPLAY",
                              f"recorded {log.header.get('recorded', '?')} on {log.header.get('kernel', '?')} "
                              f"({html.escape(log.header['replay'])})")))
        ex = Explorer(log, packet=packet, title=title)
        display(ex)
        return ex

    def compare(self, *logs, titles=None):
        """Runs side by side, one step-through for all (one output; the whole graphs statically where
        widgets do not run)."""
        from IPython.display import display

        from labkit.course.explorer import SideBySide

        view = SideBySide(*logs, titles=titles)
        display(view)
        return view

    def designs(self, name, **params) -> dict:
        """Run one scenario with each design (skb storage as the RFC has it, the metadata buffer, the
        gated stash) and show them side by side, one step-through for the three: {design: log}."""
        logs = {d: self.run(name, design=d, **params) for d in DESIGN_TITLES}
        self.compare(*logs.values(), titles=list(DESIGN_TITLES.values()))
        return logs

    def pick(self, name, choices, initial):
        """Dropdowns for the scenario's parameters and a Run button (live: on the kernel; replay: the
        recordings), above the step-through of the first run; a new run replaces it in place."""
        from IPython.display import display

        from labkit.course.explorer import Rerun

        first = self.run(name, **initial)
        view = Rerun(lambda **p: self.run(name, **p), choices, initial, log=first)
        display(view)
        return view

    def table(self, log, packet=None):
        """The log as text: one line per event."""
        print(log.timeline(packet=packet))


def _recorded_on() -> str:
    """When and on which kernel the recordings were made (from their headers)."""
    import json

    heads = []
    for p in sorted(paths.shipped("notebooks/data").glob("*.jsonl")):
        with open(p) as fh:
            try:
                heads.append(json.loads(fh.readline())["header"])
            except (ValueError, KeyError):
                continue
    if not heads:
        return "(no recordings found)"
    kernels = sorted({h.get("kernel", "?") for h in heads})
    when = sorted(h.get("recorded", "?") for h in heads)
    return (f"<b>{html.escape(', '.join(kernels))}</b> (patch series {html.escape(heads[0].get('series', '?'))}), "
            f"{html.escape(when[0][:10])}")


def start(mode=None, clock="wall") -> Lesson:
    """The lesson's setup cell: pick the mode, show the banner, start the VM when live (on this clock:
    "wall", "icount" to count guest instructions, or "measure": icount wherever the lab VM is not KVM,
    ``measure_clock``)."""
    global _last
    from IPython.display import HTML, display

    from labkit.course import errbox
    from labkit.vm.slots import SlotsFull

    errbox.install()  # a LabError from here on (this cell too): a box with the details and the fix
    if sys.platform == "emscripten":  # the browser: Graphviz in WebAssembly draws the graphs
        from labkit.viz import wasm as viz_wasm

        viz_wasm.load()
    if _last is not None:  # the cell ran again: one VM (and one slot) per notebook
        _last.close()
    lesson = _last = Lesson(mode, clock)
    if lesson.live:
        try:
            lesson.start()
        except SlotsFull as exc:  # no boot slot within BOOT_WAIT
            lesson.fall_back(exc)
    display(HTML(lesson.banner_html()))
    from labkit.course import bpfcell

    bpfcell.register(lesson)
    return lesson
