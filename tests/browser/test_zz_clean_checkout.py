"""The lessons tier leaves the checkout as it found it (``git status``).

Runs last in ``pytest tests/notebooks tests/browser``: the checkout's state
is taken when this module is imported, at collection, before any test of the
tier runs, and compared at the end. ``./lab test`` runs the tier in two
workers and this module after them, on its own: there the state was taken
by the tier's first pytest, before its workers started (tests/checkout.py). Every
run of a lesson writes somewhere (executed copies, compiled cells, the VM's
files, checkpoints, bytecode); all of it must be outside the checkout or
ignored. Run alone, the test runs exercise lessons in replay itself (as the
notebook tier does, from notebooks/), so it still means something.
"""

import pytest

from labkit import paths
from tests import checkout

pytestmark = pytest.mark.skipif(not (paths.PROJECT / ".git").exists(), reason="not a git checkout")

# What running the lessons writes inside the checkout; each must be ignored.
BYPRODUCTS = ["notebooks/.ipynb_checkpoints/01_first_storage-checkpoint.ipynb",
              "notebooks/solutions/.ipynb_checkpoints/01_first_storage-checkpoint.ipynb",
              ".ipynb_checkpoints/x-checkpoint.ipynb",
              "labkit/__pycache__/coach.cpython-311.pyc", "tests/browser/__pycache__/helpers.cpython-311.pyc",
              ".lab/cells/stamp.bpf.o", ".lab/jupyterlab.log", ".labkit-vm/bcc/out.jsonl",
              "notebooks/.labkit-vm/bcc/out.jsonl", "artifacts/notebooks/live/01_first_storage.ipynb",
              "artifacts/browser/hint-reset-01.png", "bpf/build/observe.bpf.o"]


BEFORE = checkout.before()  # before the tier's first test


def dirt(before, after) -> list:
    """What the tier made dirty: paths git did not list before, and lessons that changed."""
    return sorted(f"{after[p][0]} {p}" for p in after
                  if p not in before or (p.startswith("notebooks/") and after[p] != before[p]))


def test_what_running_lessons_writes_is_ignored():
    ignored = set(checkout.git("check-ignore", "--no-index", *BYPRODUCTS).split())
    assert ignored == set(BYPRODUCTS), f"not ignored: {sorted(set(BYPRODUCTS) - ignored)}"


@pytest.mark.timeout(600)
def test_the_lessons_tier_leaves_the_checkout_clean():
    from labkit.course.nbrun import execute

    lessons = [paths.PROJECT / "notebooks" / n for n in ("01_first_storage.ipynb", "05_netns_crossing.ipynb")]
    for path in lessons:
        r = execute(path, "replay", out_dir=paths.PROJECT / "artifacts" / "notebooks" / "clean-checkout")
        assert not r["errors"], r["errors"][:1]
    left = dirt(BEFORE, checkout.state())
    assert not left, "running the lessons left the checkout dirty (git status):\n" + "\n".join(left)
