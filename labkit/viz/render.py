"""DOT text to SVG: the one place a lab graph is drawn.

On a machine, graphviz's ``dot`` draws it (a subprocess). In the browser (labkit in
Pyodide, the JupyterLite site) there is no subprocess and no ``dot``: labkit loads
the site's Graphviz compiled to WebAssembly (``labkit.viz.wasm``, loaded by ``draw.svg()``
there) and registers it with ``use()``, and every graph (``lab.show()``, the step-through) goes through it
unchanged. Without either, the error says what to install or where the graphs work.
"""

from __future__ import annotations

from labkit import tools
from labkit.errors import MissingTool

DOT_FIX = "sudo apt-get install graphviz"
FONT = "Helvetica,Arial,sans-serif"  # every graph's text (the WebAssembly renderer measures it as another)
_renderer = None  # a callable DOT text -> SVG text that replaces dot (use())


def use(renderer) -> None:
    """Draw every graph with renderer(dot_text) -> svg_text from now on (None: dot again)."""
    global _renderer
    _renderer = renderer


def in_use() -> bool:
    """Whether a renderer other than dot was given (``use()``)."""
    return _renderer is not None


def graphviz_module():
    """The graphviz package (it builds the graphs' DOT text), or a clear error without it."""
    try:
        import graphviz
        return graphviz
    except ImportError:
        raise MissingTool("the Python package graphviz is not installed", fix="pip install graphviz==0.21") from None


def render(source: str) -> str:
    """The SVG document graphviz makes of source (DOT text)."""
    if _renderer is not None:
        return _renderer(source)
    if tools.in_browser():
        raise MissingTool("this page has no graph renderer (Graphviz in WebAssembly) loaded",
                          fix="open the lessons from the lab's JupyterLite site (labkit lite build), or live: ./lab open")
    graphviz = graphviz_module()
    if not tools.which("dot"):
        raise MissingTool("dot (graphviz) not found, it draws the lab's graphs", fix=DOT_FIX)
    try:
        return graphviz.pipe_string("dot", "svg", source, encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise MissingTool("dot (graphviz) not found, it draws the lab's graphs", fix=DOT_FIX) from None
