"""The site's service worker: JupyterLite's own, with labkit's cache of the site's files before it.

A second visit fetched every file again (a plain static server sends no cache policy,
so the browser revalidates or guesses) and JupyterLite's service worker only passes
requests on. ``service-worker.js`` beside this module serves every GET of the site from
a cache named after the build (``static/labkit/build.json``: a hash of the site's files,
written here), filled on the first visit; JupyterLite's worker, appended after it, still
answers the kernel's file system calls. A browser runs a service worker only on https or
localhost: elsewhere the site works as before, uncached.

``precache-worker.js`` (written with the build's name, ``PRECACHE``) is a second service worker,
for a scope with no pages, that the lab page registers once the lesson's kernel is up
(labkit.lite.early): installing, it puts the scripts that page loaded into the build's cache,
which is when Chromium stores them compiled (a script cached otherwise runs compiled from its
third load on), so that the next visit's JupyterLab starts from compiled code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from labkit.errors import LabError

HERE = Path(__file__).parent
WORKER = "service-worker.js"     # JupyterLite registers this one, at the site's root
BUILD = "static/labkit/build.json"
PRECACHE = "static/labkit/precache-worker.js"   # registered by the lab page (labkit.lite.early)
PRECACHE_SCOPE = "static/labkit/precache/"       # no page there: it only installs
MARK = "// labkit (labkit.lite.serviceworker)"  # how labkit's service-worker.js starts: added once


def build_id(site: Path) -> str:
    """A hash of the site's files (path and content), all but the three written here."""
    h = hashlib.sha256()
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        rel = path.relative_to(site).as_posix()
        if rel not in (WORKER, BUILD, PRECACHE):
            h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def add_service_worker(site: Path) -> dict:
    """Write the build's name and put labkit's cache before JupyterLite's service worker in site."""
    worker = site / WORKER
    if not worker.exists():
        raise LabError(f"jupyter lite build wrote no {WORKER}", fix="pip install -e '.[lite]' (the pinned versions)")
    jupyterlite = worker.read_text()
    if jupyterlite.startswith(MARK):
        raise LabError(f"{worker} has labkit's cache already")
    build = build_id(site)
    (site / BUILD).parent.mkdir(parents=True, exist_ok=True)
    (site / BUILD).write_text(json.dumps({"build": build}) + "\n")
    worker.write_text((HERE / WORKER).read_text() + "\n" + jupyterlite)
    (site / PRECACHE).write_text((HERE / Path(PRECACHE).name).read_text().replace("__BUILD__", build))
    return {"build": build}
