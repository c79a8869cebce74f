"""Every notebook top to bottom: live on the lab VM, and in replay as an
unprivileged user with no VM; an error output anywhere fails. For each
exercise, its check must fail on the untouched starter (in the lesson) and
pass on the solution (in notebooks/solutions/), live.

The executed copies are kept in artifacts/notebooks/{live,replay}/.
"""

import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from labkit import paths
from labkit.lesson import live_possible
from tests.conftest import need

NB = paths.PROJECT / "notebooks"
LESSONS = sorted(NB.glob("*.ipynb"))
SOLUTIONS = sorted((NB / "solutions").glob("*.ipynb"))
OUT = paths.PROJECT / "artifacts" / "notebooks"


def has_check(path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any("check" in c.metadata.get("tags", []) for c in nb.cells)


def show_errors(r):
    return "\n".join(f"cell {e['cell']}: {e['ename']}: {e['evalue']}\n{e['traceback']}" for e in r["errors"])


def test_the_course_is_there():
    names = [p.stem for p in LESSONS]
    assert names[:8] == ["00_index", "01_first_storage", "02_api_and_verifier", "03_clones", "04_tunnels",
                         "05_netns_crossing", "06_mark_and_alternatives", "07_playground"]
    for sol in SOLUTIONS:
        assert (NB / sol.name).exists(), f"solution {sol.name} has no lesson"
        assert has_check(NB / sol.name) and has_check(sol)


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: str(p.relative_to(NB)))
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            assert not c.outputs and c.execution_count is None, f"{path.name} cell {i} has stale outputs"


def _live():
    ok, why = live_possible()
    need(ok, f"live notebooks need the lab VM: {why}", "./lab setup")


def run_live(path, out_dir):
    """Run path live with no error output; when its kernel is shut down, the
    lesson's VM goes with it and leaves no run directory."""
    from labkit.nbrun import execute

    _live()
    dirs = set(paths.run_dir().glob("run-*"))
    r = execute(path, "live", out_dir=out_dir)
    assert not r["errors"], show_errors(r)
    assert set(paths.run_dir().glob("run-*")) <= dirs, "the notebook's lab VM left its run directory"
    return r


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_live_and_its_check_fails_on_the_starter(path):
    r = run_live(path, OUT)
    if has_check(path):
        assert r["checks"], "the check cell showed no verdict"
        assert all(c["passed"] is False for c in r["checks"]), f"a check passed on the untouched starter: {r['checks']}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_passes_its_check_live(path):
    r = run_live(path, OUT / "solutions")
    assert r["checks"] and all(c["passed"] is True for c in r["checks"]), f"checks: {r['checks']}"


@contextlib.contextmanager
def reachable_by_others(*paths_):
    """o+x on every folder above each path that lacks it (a clone under a
    private folder, an interpreter under /root/.pyenv), restored afterwards."""
    changed = []
    for path in paths_:
        for d in [path, *path.parents]:
            mode = d.stat().st_mode
            if d.is_dir() and not mode & stat.S_IXOTH and d not in [c[0] for c in changed]:
                os.chmod(d, mode | stat.S_IXOTH)
                changed.append((d, mode))
    try:
        yield
    finally:
        for d, mode in changed:
            os.chmod(d, mode)


@pytest.mark.timeout(900)
def test_every_notebook_replays_as_an_unprivileged_user_without_a_vm():
    """The way Binder runs them: not root, no VM, no kernel build, LABKIT_MODE unset."""
    setpriv = shutil.which("setpriv")
    need(os.geteuid() == 0 and setpriv is not None, "running as another user needs root and setpriv",
         "run the tests as root (sudo ./lab test)")
    nobody = pwd.getpwnam("nobody")
    python = Path(os.path.realpath(sys.executable))
    with tempfile.TemporaryDirectory(prefix="labkit-binder-") as home, \
            reachable_by_others(paths.PROJECT, python, Path(sys.base_prefix)):
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        env = {"HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        argv = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups",
                sys.executable, "-m", "labkit.nbrun", "--mode", "replay", "--json", "--out", f"{home}/out",
                *map(str, LESSONS + SOLUTIONS)]
        res = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=900)
        out_dir = Path(home) / "out" / "replay"
        if out_dir.exists():
            shutil.copytree(out_dir, OUT / "replay", dirs_exist_ok=True)
    assert res.stdout.strip(), res.stderr[-3000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(results) == len(LESSONS + SOLUTIONS)
    for r in results:
        assert not r["errors"], f"{r['notebook']}:\n{show_errors(r)}"
        assert r["replay_banner"], f"{r['notebook']} did not say it shows recordings"
        assert all(c["passed"] is None for c in r["checks"]), f"{r['notebook']}: a check judged a replay"
    assert res.returncode == 0, res.stderr[-3000:]
