"""The lessons tier leaves the checkout as it found it (``git status``).

Runs last in ``pytest tests/notebooks tests/browser`` (what ``./lab test``
runs): the checkout's state is taken when this module is imported, at
collection, before any test of the tier runs, and compared at the end. Every
run of a lesson writes somewhere (executed copies, compiled cells, the VM's
files, checkpoints, bytecode); all of it must be outside the checkout or
ignored. Run alone, the test runs exercise lessons in replay itself (as the
notebook tier does, from notebooks/), so it still means something.
"""

import hashlib
import subprocess

import pytest

from labkit import paths

pytestmark = pytest.mark.skipif(not (paths.PROJECT / ".git").exists(), reason="not a git checkout")

# What running the lessons writes inside the checkout; each must be ignored.
BYPRODUCTS = ["notebooks/.ipynb_checkpoints/01_first_storage-checkpoint.ipynb",
              "notebooks/solutions/.ipynb_checkpoints/01_first_storage-checkpoint.ipynb",
              ".ipynb_checkpoints/x-checkpoint.ipynb",
              "labkit/__pycache__/coach.cpython-311.pyc", "tests/browser/__pycache__/helpers.cpython-311.pyc",
              ".lab/cells/stamp.bpf.o", ".lab/jupyterlab.log", ".labkit-vm/bcc/out.jsonl",
              "notebooks/.labkit-vm/bcc/out.jsonl", "artifacts/notebooks/live/01_first_storage.ipynb",
              "artifacts/browser/hint-reset-01.png", "bpf/build/observe.bpf.o"]


def git(*args):
    return subprocess.run(["git", *args], cwd=paths.PROJECT, capture_output=True, text=True, check=True).stdout


def state() -> dict:
    """Every path git status lists: its status, and its content's hash."""
    out = {}
    entries = git("status", "--porcelain=v1", "-z", "--untracked-files=all").split("\0")
    it = iter(entries)
    for entry in it:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(it, None)  # the rename's source
        p = paths.PROJECT / path
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[path] = (code, digest)
    return out


BEFORE = state()  # at collection: before the tier's first test


def dirt(before, after) -> list:
    """What the tier made dirty: paths git did not list before, and lessons that changed."""
    return sorted(f"{after[p][0]} {p}" for p in after
                  if p not in before or (p.startswith("notebooks/") and after[p] != before[p]))


def test_what_running_lessons_writes_is_ignored():
    ignored = set(git("check-ignore", "--no-index", *BYPRODUCTS).split())
    assert ignored == set(BYPRODUCTS), f"not ignored: {sorted(set(BYPRODUCTS) - ignored)}"


@pytest.mark.timeout(600)
def test_the_lessons_tier_leaves_the_checkout_clean():
    from labkit.course.nbrun import execute

    lessons = [paths.PROJECT / "notebooks" / n for n in ("01_first_storage.ipynb", "05_netns_crossing.ipynb")]
    for path in lessons:
        r = execute(path, "replay", out_dir=paths.PROJECT / "artifacts" / "notebooks" / "clean-checkout")
        assert not r["errors"], r["errors"][:1]
    left = dirt(BEFORE, state())
    assert not left, "running the lessons left the checkout dirty (git status):\n" + "\n".join(left)
