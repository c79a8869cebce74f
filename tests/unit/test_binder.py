"""binder/ pins the same versions as pyproject.toml, builds with a Python labkit accepts, and installs graphviz.

The image itself is built and a lesson replayed in it by binder/check.sh (podman, by hand)."""

import re
import tomllib

from packaging.specifiers import SpecifierSet

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


# repo2docker's base environment brings a notebook that wants an older JupyterLab (7.4: <4.5);
# binder/ pins the one that goes with ours. Nothing else may differ from pyproject.toml.
BINDER_ONLY = {"notebook"}


def test_binder_pins_match_pyproject():
    project = tomllib.loads((paths.PROJECT / "pyproject.toml").read_text())["project"]
    ours = pins(project["dependencies"] + project["optional-dependencies"]["lab"])
    binder = pins((paths.PROJECT / "binder" / "requirements.txt").read_text().splitlines())
    assert set(binder) - BINDER_ONLY == set(ours), (set(binder) - BINDER_ONLY) ^ set(ours)
    assert {k: v for k, v in binder.items() if k not in BINDER_ONLY} == ours


def test_binder_builds_with_a_python_labkit_accepts():
    """With a binder/ folder repo2docker ignores requires-python: without runtime.txt it picks 3.10."""
    project = tomllib.loads((paths.PROJECT / "pyproject.toml").read_text())["project"]
    runtime = (paths.PROJECT / "binder" / "runtime.txt").read_text().strip()
    m = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert m, f"binder/runtime.txt: {runtime!r} is not python-X.Y"
    assert SpecifierSet(project["requires-python"]).contains(m.group(1))


def test_binder_installs_graphviz_and_replays():
    assert "graphviz" in (paths.PROJECT / "binder" / "apt.txt").read_text().split()
    assert "LABKIT_MODE=replay" in (paths.PROJECT / "binder" / "start").read_text()
