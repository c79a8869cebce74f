"""binder/ pins the same versions as pyproject.toml, and installs graphviz."""

import re
import tomllib

from labkit import paths


def pins(lines):
    out = {}
    for ln in lines:
        ln = ln.split("#", 1)[0].strip()
        if ln:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([\w.]+)", ln)
            assert m, f"not pinned: {ln!r}"
            out[m.group(1).lower()] = m.group(2)
    return out


def test_binder_pins_match_pyproject():
    project = tomllib.loads((paths.PROJECT / "pyproject.toml").read_text())["project"]
    ours = pins(project["dependencies"] + project["optional-dependencies"]["lab"])
    binder = pins((paths.PROJECT / "binder" / "requirements.txt").read_text().splitlines())
    assert set(binder) == set(ours), set(binder) ^ set(ours)
    assert binder == ours


def test_binder_installs_graphviz_and_replays():
    assert "graphviz" in (paths.PROJECT / "binder" / "apt.txt").read_text().split()
    assert "LABKIT_MODE=replay" in (paths.PROJECT / "binder" / "start").read_text()
