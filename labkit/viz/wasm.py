"""Graphviz in WebAssembly: how labkit draws its graphs in the browser (Pyodide).

The JupyterLite site (``labkit lite build``) serves @viz-js/viz as one ES
module with the wasm inside (``static/labkit/viz.js``). ``load()`` imports it
in the kernel's worker, waits for it where the browser lets Python wait on a
promise (JSPI: Chromium 137 and later), and registers it with
``viz_render.use()``: ``lab.show()`` and the step-through then draw every
graph with ``renderString()``, synchronously, as dot does on a machine.
Without JSPI the import finishes between cells and a graph asked for before
then says to run the cell again.
"""

from __future__ import annotations

import json

from labkit.errors import LabError
from labkit.viz import render as viz_render
from labkit.viz.render import FONT

SITE_PATH = "static/labkit/viz.js"  # labkit.lite.site.VIZ_DIR
# Graphviz in WebAssembly has no fonts: it sizes text from tables of a few fonts' metrics, and a
# font list it does not know (labkit.viz.render.FONT) gets the narrowest (Times). Labels are measured as DejaVu
# Sans, the widest common sans (and the one a Debian browser draws sans-serif in), and drawn in it,
# else Verdana (as wide), else the browser's sans-serif (narrower): text never spills out of its box.
MEASURE = "DejaVu Sans"
SHOWN = "DejaVu Sans,Verdana,sans-serif"
_state = {"viz": None, "error": None, "loading": False}


def module_url(worker_url: str) -> str:
    """The site's viz.js, from the URL of the kernel's worker script: the site is what comes before
    its /extensions/ folder (the site may be served below a path, as on GitHub Pages)."""
    base, found, _ = worker_url.partition("/extensions/")
    if not found:
        base = worker_url.rsplit("/", 1)[0]
    return f"{base}/{SITE_PATH}"


def _ready(viz):
    _state["viz"], _state["loading"] = viz, False


def _failed(err):
    _state["error"], _state["loading"] = str(err), False


def load() -> bool:
    """Import Graphviz once and draw with it from now on; True when it is ready already."""
    if _state["viz"] is not None or _state["loading"]:
        return _state["viz"] is not None
    import js
    from pyodide.code import run_js
    from pyodide.ffi import create_once_callable

    url = module_url(str(js.location.href))
    viz_render.use(render)
    promise = run_js(f"import({json.dumps(url)}).then(m => m.instance())")
    try:
        from pyodide.ffi import can_run_sync, run_sync

        if can_run_sync():
            try:
                _ready(run_sync(promise))
            except Exception as exc:  # noqa: BLE001 - the import failed: say so when a graph is asked for
                _failed(exc)
            return _state["viz"] is not None
    except ImportError:  # a Pyodide without run_sync
        pass
    _state["loading"] = True
    promise.then(create_once_callable(_ready), create_once_callable(_failed))
    return False


def render(source: str) -> str:
    """SVG of source (DOT text), drawn by Graphviz in WebAssembly."""
    viz = _state["viz"]
    if viz is None:
        if _state["error"]:
            raise LabError(f"Graphviz (WebAssembly) did not load in this page: {_state['error']}",
                           fix=f"is {SITE_PATH} in the site? (labkit lite build)")
        raise LabError("Graphviz (WebAssembly) is still loading in this page", fix="run the cell again in a moment")
    import js
    from pyodide.ffi import to_js

    source = source.replace(f'"{FONT}"', f'"{MEASURE}"')
    try:
        svg = str(viz.renderString(source, to_js({"format": "svg"}, dict_converter=js.Object.fromEntries)))
        return svg.replace(f'font-family="{MEASURE}"', f'font-family="{SHOWN}"')
    except Exception as exc:  # noqa: BLE001 - a JsException with Graphviz's own message
        raise LabError(f"Graphviz could not draw the graph: {exc}") from None
