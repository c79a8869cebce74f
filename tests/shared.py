"""What one test run makes once for all its pytest-xdist workers (``./lab test`` runs the host
and lessons tiers in two): a hub install, the bystander's VM.

The run's controller (the pytest process ``./lab test`` starts) makes a folder for the run and
names it in ``$LABKIT_TEST_SHARED`` before its workers start; a worker that needs a resource
takes the resource's lock there, finds it made or makes it, and writes what it is (JSON, with
the "module:function" that removes it). When the run ends, the controller removes everything
so written, newest first (the bystander, which runs from the install, before the install).
A run without workers is its own controller.
"""

import fcntl
import importlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

ENV = "LABKIT_TEST_SHARED"


def start_run():
    """In the controller: the run's shared folder (none inside the lab VM, whose tier shares nothing)."""
    if os.environ.get("LABKIT_GUEST") == "1" or os.environ.get(ENV):
        return None
    path = tempfile.mkdtemp(prefix="lkshared-")
    os.environ[ENV] = path
    return path


def shared(name: str, make, undo: str) -> dict:
    """make()'s value (a dict), made once per run by whichever worker asks first; undo names the
    function ("module:function") the controller calls with it at the end."""
    folder = Path(os.environ[ENV])
    with open(folder / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / f"{name}.json"
        if done.exists():
            return json.loads(done.read_text())["value"]
        value = make()
        done.write_text(json.dumps({"value": value, "undo": undo, "made": time.monotonic()}))
        return value


def end_run(path):
    """In the controller: undo what the workers made, newest first, then remove the folder."""
    if not path:
        return
    made = []
    for f in Path(path).glob("*.json"):
        try:
            made.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    errors = []
    for item in sorted(made, key=lambda m: m["made"], reverse=True):
        module, _, func = item["undo"].partition(":")
        try:
            getattr(importlib.import_module(module), func)(item["value"])
        except Exception as exc:  # noqa: BLE001 - undo the rest, then say what failed
            errors.append(f"{item['undo']}: {exc}")
    shutil.rmtree(path, ignore_errors=True)
    os.environ.pop(ENV, None)
    if errors:
        raise RuntimeError("undoing the run's shared resources failed: " + "; ".join(errors))
