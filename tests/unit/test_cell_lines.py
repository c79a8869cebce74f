"""%%bpf cells: the line numbers in clang's and the verifier's complaints are
the ones the notebook editor shows (the %%bpf line is line 1)."""

from pathlib import Path

from labkit.course.bpfcell import body_first_line, file_text, on_cell_lines

CELL = "%%bpf stamp --run basic\n#include \"lab_user.h\"\n\nint x = ;\n"


def editor_line(cell, text):
    """What JupyterLab's gutter shows next to the line holding text."""
    return next(i for i, ln in enumerate(cell.splitlines(), 1) if text in ln)


def test_the_compiled_file_has_the_cells_line_numbers():
    body = CELL.split("\n", 1)[1]
    src = file_text("stamp", body).splitlines()
    line = editor_line(CELL, "int x = ;")
    assert line == 4
    assert src[line - 1] == "int x = ;"   # clang's line N is the editor's line N
    assert src[0].startswith("//")      # the %%bpf line, as a comment


def test_blank_lines_above_the_magic_line_count():
    raw = "\n\n" + CELL
    body = CELL.split("\n", 1)[1]
    first = body_first_line(raw, body)
    assert first == 4
    assert file_text("stamp", body, first).splitlines()[editor_line(raw, "int x = ;") - 1] == "int x = ;"


def test_an_unknown_or_other_raw_cell_means_line_2():
    body = CELL.split("\n", 1)[1]
    assert body_first_line(None, body) == 2
    assert body_first_line(CELL, body) == 2
    assert body_first_line("\n%%bpf other\nint y;\n", body) == 2
    assert body_first_line("\n\nprint(1)\n" + body, body) == 2


def test_clang_and_verifier_references_become_cell_lines():
    src = Path("/home/u/.lab/cells/stamp.bpf.c")
    clang = f"{src}:4:9: error: expected expression\n    4 | int x = ;\n"
    assert on_cell_lines(clang, src).startswith("cell line 4:9: error")
    verifier = ("the verifier rejected tc_stamp (stamp.bpf.o) at stamp.bpf.c:4: R0 invalid mem access\n"
                "stamp.bpf.c:4: int x = ;")
    out = on_cell_lines(verifier, src)
    assert "at cell line 4:" in out and "\ncell line 4: int x = ;" in out
    assert "/.lab/" not in on_cell_lines(clang, src)


def test_the_magic_sees_the_cell_as_typed():
    """In IPython the magic gets the body only; the raw cell (with the blank lines
    IPython drops above the %%bpf line) is in the input history while it runs."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    from labkit.course.bpfcell import raw_cell_of

    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell(config=cfg)
    seen = []
    ip.register_magic_function(lambda line, cell: seen.append(body_first_line(raw_cell_of(ip), cell)),
                               magic_kind="cell", magic_name="bpf")
    for raw in ("%%bpf t\nint x;\n", "\n\n%%bpf t\nint x;\n"):
        ip.run_cell(raw, store_history=True)
    assert seen == [2, 4]
