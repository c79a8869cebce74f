"""labkit's replay path runs where the JupyterLite site runs it: from its wheel, in a Python
with no subprocess, no dot, no thread of labkit's, no pyroute2 or scapy, and no checkout.

The wheel is built from this checkout and installed into an empty folder; every lesson runs
top to bottom in replay in a notebook kernel that has those taken away
(pyodide_sim/sitecustomize.py). Graphs go through the renderer the site registers
(labkit.viz.render.use); here it keeps their DOT text, and dot then draws each one, so a
graph the replay path could only make with dot's help fails here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import paths

SIM = Path(__file__).parent / "pyodide_sim"
LESSONS = sorted((paths.PROJECT / "notebooks").glob("0*.ipynb"))
RUN = ("import os, sys; os.environ['LABKIT_PYODIDE_SIM'] = sys.argv[1]; "
       "from labkit.course.nbrun import main; sys.exit(main(sys.argv[2:]))")


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """A folder holding labkit installed from a wheel of this checkout, and nothing else."""
    tmp = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"),
                        str(paths.PROJECT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("labkit-*.whl")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp / "lib"),
                        str(whl)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "lib"


def test_every_lesson_replays_from_the_wheel_without_what_pyodide_lacks(wheel_site, tmp_path):
    work, dots = tmp_path / "lessons", tmp_path / "dot"
    work.mkdir()
    dots.mkdir()
    for nb in LESSONS:
        shutil.copy(nb, work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env.update(PYTHONPATH=f"{SIM}{os.pathsep}{wheel_site}", HOME=str(tmp_path), LABKIT_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", RUN, str(dots), "--mode", "replay", "--json", "--timeout", "120",
                        *sorted(str(p) for p in work.glob("*.ipynb"))],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    results = json.loads(r.stdout.strip().splitlines()[-1])
    assert (dots / "labkit-path").read_text().startswith(str(wheel_site)), "the kernel did not use the wheel's labkit"
    assert len(results) == len(LESSONS) == 10
    errors = [f"{Path(res['notebook']).name} cell {e['cell']}: {e['ename']}: {e['evalue']}"
              for res in results for e in res["errors"]]
    assert not errors, "in replay without what Pyodide lacks:\n" + "\n".join(errors)
    assert all(res["replay_banner"] for res in results), "a lesson did not say it shows recordings"
    graphs = sorted(dots.glob("*.dot"))
    assert len(graphs) >= 10, f"only {len(graphs)} graphs drawn in ten lessons"
    for g in graphs:
        d = subprocess.run(["dot", "-Tsvg", str(g)], capture_output=True, text=True, timeout=60)
        assert d.returncode == 0 and "<svg" in d.stdout, f"{g.name}: {d.stderr[-500:]}"
