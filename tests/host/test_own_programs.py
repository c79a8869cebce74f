"""Your own programs in a run, as the notebooks' %%bpf cells make them: the
lesson cells compiled from the notebooks themselves, errors on cell lines,
lab_report() events, XDP metadata, and a GENEVE option across a tunnel."""

import re

import nbformat
import pytest

from labkit import paths
from labkit.course import tunnels
from labkit.course.bpfcell import compile_cell, verify
from labkit.course.lesson import Lesson, live_possible
from tests.conftest import need

NB = paths.PROJECT / "notebooks"


def cell_source(notebook, name):
    """The C of the %%bpf NAME cell in a notebook (without the magic line)."""
    nb = nbformat.read(NB / notebook, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code" and re.match(rf"%%bpf {name}\b", c.source):
            return c.source.split("\n", 1)[1]
    raise LookupError(f"{notebook} has no %%bpf {name} cell")


@pytest.fixture(scope="module")
def lab():
    ok, why = live_possible()
    need(ok, f"these tests run programs on the lab kernel: {why}", "./lab setup")
    lesson = Lesson("live")
    lesson.start(say=lambda *a: None)
    yield lesson
    lesson.close()


def test_clang_errors_name_the_cell_line():
    need(live_possible()[0], "compiling a cell needs the lab kernel's vmlinux.h", "./lab setup")
    src = cell_source("01_first_storage.ipynb", "stamp").replace("struct stamp {", "struct stamp {{", 1)
    cell = compile_cell("t_clang", src)
    assert not cell.ok and cell.stage == "compile"
    # the line the notebook editor shows: the %%bpf line is line 1
    line = next(i for i, ln in enumerate(src.splitlines(), 2) if "struct stamp {{" in ln)
    assert f"cell line {line}:" in cell.error, cell.error
    assert "/.lab/" not in cell.error


def test_verifier_reject_names_the_cell_line(lab):
    src = cell_source("02_api_and_verifier.ipynb", "fixme")
    cell = verify(compile_cell("t_fixme", src), lab)
    assert cell.stage == "verifier", cell.error
    line = next(i for i, ln in enumerate(src.splitlines(), 2) if ln.strip() == "v->token = token;")
    assert f"cell line {line}" in cell.error and "map_value_or_null" in cell.error, cell.error


def test_data_meta_goes_from_xdp_to_tc(lab):
    cell = verify(compile_cell("t_meta", cell_source("06_mark_and_alternatives.ipynb", "meta")), lab)
    assert cell.ok, cell.error
    log = lab.run("netns", path="veth", attach=[cell.at("xdp_meta", "xdp", "lk-b0"),
                                                cell.at("tc_meta", "tc/ingress", "lk-b0")])
    token = log.header["tokens"][0]
    reports = [e for e in log if e["kind"] == "report"]
    assert [(r["tag"], r["value"]) for r in reports] == [("value", token)], log.timeline()
    # XDP on the veth ran on a copy: tc ingress sees another skb than the sender's.
    first = next(e for e in log if e["kind"] == "hook")
    at_b = next(e for e in log if e["kind"] == "hook" and e["ifname"] == "lk-b0")
    assert first["skb"] != at_b["skb"] == reports[0]["skb"]


def test_a_geneve_option_carries_the_value_across(lab):
    starter = verify(compile_cell("t_carry0", cell_source("04_tunnels.ipynb", "carry")), lab)
    solution = verify(compile_cell("t_carry1", cell_source("solutions/04_tunnels.ipynb", "carry")), lab)
    assert starter.ok and solution.ok, (starter.error, solution.error)
    assert tunnels.carry_across_tunnel(lab, starter, quiet=True).passed is False
    v = tunnels.carry_across_tunnel(lab, solution, quiet=True)
    assert v.passed is True, str(v)


def test_the_geneve_option_is_judged_as_the_wire_carries_it(lab):
    """A wrong option length arrives just the same (the kernel does not parse the options): the check
    reads the length field on the wire; and a whole struct as the initial value is refused by the verifier."""
    solution = cell_source("solutions/04_tunnels.ipynb", "carry")
    assert ".length = 1" in solution
    long = verify(compile_cell("t_carry2", solution.replace(".length = 1", ".length = 2")), lab)
    v = tunnels.carry_across_tunnel(lab, long, quiet=True)
    assert v.passed is False and any("length field is 2" in line for line in v.lines), str(v)
    whole = solution.replace("&opt.value, sizeof(opt.value)", "&opt, sizeof(opt)")
    assert whole != solution
    cell = verify(compile_cell("t_carry3", whole), lab)
    assert cell.stage == "verifier" and "initial value of 8 bytes" in cell.error and "the map's value is 4 bytes" \
        in cell.error, cell.error


def test_a_flag_the_path_does_not_need_fails_exercise_08(lab):
    solution = cell_source("solutions/08_beyond_the_rfc.ipynb", "keep")
    assert "BPF_F_SKB_KEEP_NETNS" in solution and "BPF_F_CLONE" not in solution
    extra = verify(compile_cell("t_keep1", solution.replace("BPF_F_SKB_KEEP_NETNS",
                                                            "BPF_F_SKB_KEEP_NETNS | BPF_F_CLONE", 1)), lab)
    v = tunnels.keep_through_tunnel(lab, extra, quiet=True)
    assert v.passed is False and "a flag it does not need" in v.summary, str(v)
    assert any("BPF_F_CLONE" in line for line in v.lines)
