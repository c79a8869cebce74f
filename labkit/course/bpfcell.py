"""``%%bpf NAME``: a notebook cell that is a BPF program.

The cell is C. It is compiled with clang against the lab kernel's
``vmlinux.h`` (``#include "lab_user.h"`` gives the skb storage API and
``lab_report()``), loaded once in the lab VM so the verifier has its say,
and bound to ``NAME`` in the notebook as a ``BpfCell``::

    %%bpf stamp --run basic --attach tc_stamp=tc/ingress@lk-b0 --attach show=socket_filter@b

``--run SCENARIO [--param k=v]`` runs a library scenario with the cell's
programs attached (``prog=HOOK@DEV`` for tc and xdp, ``prog=HOOK@NS`` for
cgroup_skb/ingress and socket_filter, ``prog=trace`` for tracing programs; a
device in several namespaces is written ``NS/DEV``)
and shows the result. clang's errors and the verifier's complaints point
at the cell's own lines, numbered as the notebook editor numbers them (the
``%%bpf`` line is line 1, the C starts on line 2); nothing is raised at the
learner, the cell shows what went wrong and ``NAME.error`` keeps it.
"""

from __future__ import annotations

import argparse
import html
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from labkit import paths
from labkit.errors import BpfBuildError, LabError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


def cell_dir():
    """Where cells are compiled: this user's lab state (the lab VM reads it at the same path)."""
    return paths.state_dir() / "cells"


@dataclass
class BpfCell:
    """One %%bpf cell: its source, object and programs, or what stopped it."""

    name: str
    source: str
    obj: Path | None = None
    programs: list = field(default_factory=list)
    error: str | None = None   # clang's or the verifier's complaint, on cell lines
    stage: str | None = None   # "compile", "verifier" or "replay" when there is no object to run

    @property
    def ok(self) -> bool:
        return self.error is None and self.obj is not None

    def at(self, prog, at, where=None):
        """An ``Attach`` of program prog at hook at. where: a device for tc (``lk-b0``, or ``b/lk-t``
        when the device name is in several namespaces), a namespace for cgroup_skb/socket_filter,
        nothing for trace."""
        from labkit.runtime.parts import Attach

        if not self.ok:
            raise LabError(f"cell {self.name} has no loadable object ({self.stage}): {self.error or ''}".strip(),
                           fix="fix the cell and run it again")
        if prog not in self.programs:
            raise LabError(f"cell {self.name} has no program {prog!r}",
                           fix=f"its programs: {', '.join(self.programs) or 'none'}")
        if at.startswith("tc/") or at == "xdp":
            ns, _, dev = (where or "").rpartition("/")
            return Attach(str(self.obj), prog, at, ns=ns, dev=dev)
        return Attach(str(self.obj), prog, at, ns=where or "")


def compile_cell(name: str, source: str, kernel_dir=None, first_line=2) -> BpfCell:
    """clang the cell into <lab state>/cells/NAME.bpf.o; errors name the cell's lines.

    source is the cell's body (the C below the ``%%bpf`` line); first_line is the
    editor line it starts on, 2 unless blank lines came before the ``%%bpf`` line."""
    from labkit import kernel, tools
    from labkit.bpf import build as bpfbuild

    if not NAME_RE.match(name):
        raise LabError(f"%%bpf needs a name for the cell (a Python identifier), got {name!r}",
                       fix="write it like: %%bpf stamp")
    cell = BpfCell(name, source)
    kdir = Path(kernel_dir) if kernel_dir else kernel.kernel_path()
    cells = cell_dir()
    cells.mkdir(parents=True, exist_ok=True)
    src = cells / f"{name}.bpf.c"
    src.write_text(file_text(name, source, first_line))
    obj = cells / f"{name}.bpf.o"
    clang = tools.require("clang")
    # An skb storage map is an anonymous struct passed as struct bpf_map *,
    # which clang warns about in every call: keep that noise out of the cell.
    flags = [*bpfbuild.cflags(kdir), "-Wno-incompatible-pointer-types"]
    res = subprocess.run([clang, *flags, "-c", str(src), "-o", str(obj)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        obj.unlink(missing_ok=True)
        cell.error, cell.stage = on_cell_lines(res.stderr, src), "compile"
        return cell
    cell.obj = obj
    cell.programs = program_names(obj)
    return cell


def program_names(obj: Path) -> list:
    """The programs in an object (libbpf opens it without loading: no privilege needed)."""
    from labkit.bpf.libbpf import BpfObject

    with BpfObject(obj, load=False) as o:
        return list(o.programs)


def file_text(name: str, source: str, first_line=2) -> str:
    """The file clang compiles: the body under as many lines as stood above it in
    the cell (the last one the %%bpf line, as a comment), so every line number clang,
    the BTF line info and so the verifier give is the line the notebook editor shows."""
    first_line = max(int(first_line), 2)
    return "\n" * (first_line - 2) + f"// %%bpf {name}\n" + source


def body_first_line(raw_cell, body="") -> int:
    """The editor line the body of a %%bpf cell starts on: IPython drops blank lines
    above the magic line, the editor counts them. 2 when raw_cell is unknown or is
    not the cell with this body."""
    if not raw_cell or body.rstrip("\n") not in raw_cell:  # the history keeps no trailing newlines
        return 2
    for i, ln in enumerate(raw_cell.splitlines(), 1):
        if ln.strip():
            return i + 1 if ln.lstrip().startswith("%%bpf") else 2
    return 2


def on_cell_lines(text: str, src: Path) -> str:
    """clang's and the verifier's file references rewritten as the cell's lines."""
    out = re.sub(rf"{re.escape(str(src))}:(\d+)", r"cell line \1", text)
    out = re.sub(rf"\b{re.escape(src.name)}:(\d+)", r"cell line \1", out)
    return out.replace(str(src), "cell").replace(src.name, "cell")


def verify(cell: BpfCell, lesson) -> BpfCell:
    """Load the cell's object in the lab VM once; a reject becomes cell.error."""
    from labkit.errors import VerifierError

    try:
        lesson.load(cell.obj)
    except VerifierError as exc:
        cell.error = on_cell_lines(f"{exc.message}\n{exc.details}", Path(cell.obj.name[:-2] + ".c"))
        cell.stage = "verifier"
    return cell


def parse_attach(spec: str):
    """``prog=tc/ingress@lk-b0`` -> (prog, at, where)."""
    if "=" not in spec:
        raise LabError(f"--attach {spec!r}: write it as PROG=HOOK@WHERE",
                       fix="for example tc_stamp=tc/ingress@lk-b0, show=socket_filter@b, clean=trace")
    prog, rest = spec.split("=", 1)
    at, _, where = rest.partition("@")
    return prog, at, where or None


def _parser():
    p = argparse.ArgumentParser(prog="%%bpf", add_help=False)
    p.add_argument("name")
    p.add_argument("--run", metavar="SCENARIO")
    p.add_argument("--param", action="append", default=[], metavar="K=V")
    p.add_argument("--attach", action="append", default=[], metavar="PROG=HOOK@WHERE")
    return p


def _show_error(cell: BpfCell):
    from IPython.display import HTML, display

    title = {"compile": "clang could not compile the cell",
             "verifier": "the verifier rejected the cell's program"}.get(cell.stage, "the cell did not load")
    display(HTML(f'<div class="labkit-error" style="border-left:6px solid #c62828;background:#ffebee;'
                 f'padding:6px 10px"><b>{title}</b><pre style="margin:4px 0">{html.escape(cell.error)}</pre>'
                 f"</div>"))


def run_magic(lesson, line: str, source: str, user_ns: dict, first_line=2):
    """What ``%%bpf`` does; returns the BpfCell (also bound to its name). first_line:
    the editor line the body starts on (``body_first_line``)."""
    from IPython.display import HTML, display

    try:
        args = _parser().parse_args(shlex.split(line))
    except SystemExit:
        display(HTML("<b>%%bpf NAME [--run SCENARIO [--param K=V]] [--attach PROG=HOOK@WHERE ...]</b>"))
        return None
    if lesson is None or not lesson.live:
        cell = BpfCell(args.name, source, error="compiling and loading a BPF cell needs the live lab "
                       "(./lab open); in replay the cell is shown, not run", stage="replay")
        user_ns[args.name] = cell
        display(HTML(f"<i>%%bpf {html.escape(args.name)}: {html.escape(cell.error)}.</i>"))
        return cell
    try:
        cell = compile_cell(args.name, source, first_line=first_line)
        if cell.ok:
            verify(cell, lesson)
    except (LabError, BpfBuildError) as exc:
        cell = BpfCell(args.name, source, error=exc.headline(), stage="compile")
    user_ns[args.name] = cell
    if not cell.ok:
        _show_error(cell)
        return cell
    display(HTML(f"<b>{html.escape(args.name)}</b>: compiled and accepted by the verifier on the lab kernel; "
                 f"programs: <code>{html.escape(', '.join(cell.programs))}</code>"))
    if args.run:
        try:
            params = dict(p.split("=", 1) for p in args.param)
            attach = [cell.at(*parse_attach(s)) for s in args.attach]
            log = lesson.run(args.run, attach=attach, **params)
        except LabError as exc:  # a device that is not there, a scenario that cannot run: the lab's error box
            from labkit.course import errbox

            errbox.show(exc)
            return cell
        cell.log = log
        lesson.show(log)
    return cell


def place(a, sc):
    """A tc attach names a device: find the namespace it is in."""
    from dataclasses import replace

    if (a.at.startswith("tc/") or a.at == "xdp") and not a.ns:
        hits = sorted({ns for ns, dev in sc.topology.devices() if dev == a.dev})
        if len(hits) != 1:
            raise LabError(f"device {a.dev!r} is in {len(hits)} namespaces of {sc.name}",
                           fix="write NS/DEV; devices: "
                           + ", ".join(sorted(f"{n}/{d}" for n, d in sc.topology.devices())))
        return replace(a, ns=hits[0])
    return a


def raw_cell_of(ip):
    """The cell as typed, when IPython has it: it stores the input before running it."""
    try:
        return ip.history_manager.input_hist_raw[-1]
    except (AttributeError, IndexError, TypeError):
        return None


def register(lesson):
    """Make %%bpf available in the running IPython, bound to lesson."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    ip = get_ipython()
    if ip is None:
        return

    def bpf(line, cell):
        run_magic(lesson, line, cell, ip.user_ns, first_line=body_first_line(raw_cell_of(ip), cell))

    bpf.__doc__ = __doc__
    ip.register_magic_function(bpf, magic_kind="cell", magic_name="bpf")
