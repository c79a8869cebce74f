"""The lesson's kernel started with the page, while JupyterLab starts (not after it).

JupyterLab spends 3.5-4.5 s starting before it creates the Pyodide kernel's worker, which then
spends as long loading Pyodide and the kernel's packages: one after the other, on a machine
with a core to spare for each. The site's lab page gets a script (``early-page.js`` beside
this module, inlined first in ``lab/index.html``) that creates that worker at once, from
``early-worker.mjs``: the kernel's own worker script with ``boot.mjs``'s ``prestart`` begun, so
Pyodide and the kernel's packages load (and ``pyodide_kernel`` is imported) as JupyterLab starts.
When JupyterLab creates the kernel's worker, it gets that one, and the kernel's ``loadPyodide``
call gets the Pyodide prestart began. The worker's own files stay as jupyter lite build wrote them.

On a first visit the script registers the site's service worker (``SERVICE_WORKER``, as
JupyterLite would seconds later) and creates the worker once it controls the page, so that the
kernel's files come through the site's cache: Pyodide's wasm served from there is kept compiled
for the next visit (without, the next visit compiled it again: ~5 s of CPU). Once the kernel is
up, it hands the scripts the page loaded to the precaching service worker
(``labkit.lite.serviceworker.PRECACHE``), which stores them compiled for the next visit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from labkit.errors import LabError
from labkit.lite.serviceworker import PRECACHE, PRECACHE_SCOPE

HERE = Path(__file__).parent
KERNEL_STATIC = "extensions/@jupyterlite/pyodide-kernel-extension/static"
KERNEL_WORKER = "comlink.worker.*.js"           # the kernel's worker when not cross-origin isolated
EARLY_WORKER = "labkit-early.worker.mjs"        # beside it: the same folder, the same relative URLs
PAGE = "lab/index.html"
PAGE_SCRIPT = "early-page.js"
# the site's service worker as JupyterLite registers it (its ServiceWorkerManager): the same URL,
# so that JupyterLite finds it registered
SERVICE_WORKER = "service-worker.js?enableCache=false"
MARK = "// labkit (labkit.lite.early)"


def kernel_worker(site: Path) -> Path:
    """The Pyodide kernel's worker script jupyter lite build wrote (one, its name hashed)."""
    found = sorted((site / KERNEL_STATIC).glob(KERNEL_WORKER))
    if len(found) != 1:
        raise LabError(f"expected one {KERNEL_WORKER} in {site / KERNEL_STATIC}, found {len(found)}",
                       fix="pip install -e '.[lite]' (the pinned jupyterlite-pyodide-kernel)")
    return found[0]


def relative(path: str, start: str) -> str:
    """path from the folder of start (both relative to the site's root, '/'-separated)."""
    up = start.count("/")
    return "../" * up + path if up else "./" + path


def fill(template: str, values: dict) -> str:
    """template with each "__NAME__" replaced by its value; every placeholder must be filled."""
    for name, value in values.items():
        template = template.replace(f"__{name}__", value)
    left = re.findall(r"__[A-Z][A-Z_]*__", template)
    if left:
        raise LabError(f"labkit's early kernel: {', '.join(left)} left unfilled")
    return template


def early_worker(site: Path, pyodide_dir: str, boot: str, packages) -> str:
    """The text of the early worker: it imports the kernel's worker and prestarts boot's Pyodide
    (pyodide_dir: the site's Pyodide folder, relative to the site's root)."""
    worker = kernel_worker(site)
    at = f"{KERNEL_STATIC}/{EARLY_WORKER}"
    return fill((HERE / "early-worker.mjs").read_text(), {
        "BOOT": relative(f"{pyodide_dir}/{boot}", at), "KERNEL_WORKER": worker.name,
        "INDEX_URL": relative(f"{pyodide_dir}/", at), "PACKAGES": json.dumps(list(packages))})


def page_script(site: Path) -> str:
    """The lab page's inline script that starts the early worker (URLs relative to lab/)."""
    return fill((HERE / PAGE_SCRIPT).read_text(), {
        "KERNEL_WORKER_URL": relative(f"{KERNEL_STATIC}/{kernel_worker(site).name}", PAGE),
        "EARLY_WORKER_URL": relative(f"{KERNEL_STATIC}/{EARLY_WORKER}", PAGE),
        "SERVICE_WORKER_URL": relative(SERVICE_WORKER, PAGE),
        "PRECACHE_WORKER_URL": relative(PRECACHE, PAGE), "PRECACHE_SCOPE": relative(PRECACHE_SCOPE, PAGE)})


def add_early_kernel(site: Path, pyodide_dir: str, boot: str, packages) -> dict:
    """Write the early worker into site and the script that starts it first into its lab page."""
    page = site / PAGE
    html = page.read_text()
    if MARK in html:
        raise LabError(f"{page} starts labkit's early kernel already")
    # first in the head, after the charset (which must come in the page's first 1024 bytes)
    found = re.search(r"<meta charset=[^>]*>", html, re.I) or re.search(r"<head>", html, re.I)
    if not found:
        raise LabError(f"{page} has no <head>")
    (site / KERNEL_STATIC / EARLY_WORKER).write_text(early_worker(site, pyodide_dir, boot, packages))
    at = found.end()
    page.write_text(f"{html[:at]}\n    <script>\n{page_script(site)}    </script>{html[at:]}")
    return {"early_kernel": f"{KERNEL_STATIC}/{EARLY_WORKER}"}
