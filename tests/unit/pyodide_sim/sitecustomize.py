"""What Pyodide does not have, taken away from a CPython notebook kernel (test_replay_in_pyodide.py).

Active only where $LABKIT_PYODIDE_SIM names a folder: pyroute2 and scapy do not
import (they are the [live] extra), labkit knows it is in the browser ($LABKIT_BROWSER,
labkit.tools.in_browser()), no subprocess starts and no program is found
on PATH (no dot, no QEMU), fcntl has no file locks, labkit starts no thread, and graphs are drawn by the
renderer the JupyterLite site registers (labkit.viz.render.use), here one that
keeps each graph's DOT text in that folder for the test to draw with dot.
"""

import os
import sys

_OUT = os.environ.get("LABKIT_PYODIDE_SIM")

if _OUT:
    import itertools
    import shutil
    import subprocess
    import threading

    class _NotInPyodide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pyroute2", "scapy"):
                raise ImportError(f"No module named {name!r} (not in Pyodide: labkit[live])")
            return None

    sys.meta_path.insert(0, _NotInPyodide())

    class _NoPopen:
        def __init__(self, args, *a, **k):
            raise OSError(f"no subprocess in Pyodide: {args!r}")

    subprocess.Popen = _NoPopen
    shutil.which = lambda *a, **k: None

    import fcntl  # Pyodide's is a stub: no flock, no LOCK_* constants

    for _name in [n for n in dir(fcntl) if n.startswith("LOCK_")] + ["flock", "lockf"]:
        delattr(fcntl, _name)

    os.environ["LABKIT_BROWSER"] = "1"  # labkit.tools.in_browser()

    _start = threading.Thread.start

    def _start_not_from_labkit(self):
        f = sys._getframe(1)
        while f is not None:
            if "/labkit/" in f.f_code.co_filename:
                raise RuntimeError("can't start new thread (no threads in Pyodide)")
            f = f.f_back
        return _start(self)

    threading.Thread.start = _start_not_from_labkit

    _n = itertools.count()

    def _keep(source):
        with open(os.path.join(_OUT, f"{next(_n):03d}.dot"), "w") as fh:
            fh.write(source)
        return '<svg xmlns="http://www.w3.org/2000/svg" width="8pt" height="8pt" viewBox="0 0 8 8"></svg>'

    from labkit.viz import render as viz_render

    viz_render.use(_keep)
    with open(os.path.join(_OUT, "labkit-path"), "w") as fh:
        fh.write(viz_render.__file__)
