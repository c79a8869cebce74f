"""The checkout's state as ``git status`` shows it, for the lessons tier's clean-checkout test
(tests/browser/test_zz_clean_checkout.py).

``./lab test`` runs that test in a pytest of its own after the tier's workers: it names a
file in ``$LABKIT_CHECKOUT_BEFORE``, where the tier's first pytest writes the state before
any test runs (tests/conftest.py), and the test compares against that.
"""

import hashlib
import json
import os
import subprocess

from labkit import paths

ENV = "LABKIT_CHECKOUT_BEFORE"


def git(*args):
    return subprocess.run(["git", *args], cwd=paths.PROJECT, capture_output=True, text=True, check=True).stdout


def state() -> dict:
    """Every path git status lists: its status, and its content's hash."""
    if not (paths.PROJECT / ".git").exists():
        return {}
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
        out[path] = [code, digest]
    return out


def save_before():
    """The state into $LABKIT_CHECKOUT_BEFORE, once (the first pytest of the tier)."""
    path = os.environ.get(ENV)
    if path and not os.path.exists(path):
        with open(path, "w") as fh:
            json.dump(state(), fh)


def before() -> dict:
    """The state saved before the tier, else the state now."""
    path = os.environ.get(ENV)
    if path and os.path.exists(path):
        with open(path) as fh:
            return json.load(fh)
    return state()
