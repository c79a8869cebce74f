"""What every lab graph shares: colours, fonts, graphviz, and the SVG a notebook shows.

A graph made here (``digraph``) shows itself in a notebook as HTML holding
the SVG, which shrinks to the output's width (an ``image/svg+xml`` output
is drawn at its own size, and a wide graph then needs scrolling sideways).
"""

from __future__ import annotations

import html
import re
import sys

from labkit.viz.render import FONT

STATE = {"created": ("#69db7c", "#0b3d1a"), "present": ("#c3f0cb", "#0b3d1a"),
         "absent": ("#eeeeee", "#868e96"), "refused": ("#ffa94d", "#5c2a00"), "mark": ("#d0e2ff", "#1e3a8a")}
FADED = ("#f6f6f6", "#c4c4c4")  # fill, text/line of what has not happened yet
NS_FILL = ("#eef4fb", "#fdf6e3", "#f3effa", "#eefaf3")
SKB_COLOR = ("#343a40", "#7048e8", "#0c8599", "#c2255c")
SCRUB, FREED = "#e03131", "#868e96"
KEPT = "#2b8a3e"  # a scrub that keeps a map's storage (BPF_F_SKB_KEEP_TUNNEL / _NETNS)
HOOK_NAMES = {"after_clone": "after bpf_clone_redirect()"}  # the same tc program, once the clone is sent
FIT = "max-width:100%;height:auto"  # the root <svg>'s style: never wider than where it is shown
_classes = {}


def load_graphviz():
    from labkit.viz.render import graphviz_module

    return graphviz_module()


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def figure_html(svg_text: str) -> str:
    """An SVG from ``svg()`` as HTML that shrinks to the output's width (nothing to scroll sideways)."""
    return f'<div class="labkit-graph" style="max-width:100%;overflow-x:auto">{svg_text}</div>'


def _fitting(gv):
    """graphviz.Digraph that a notebook shows as ``figure_html`` (made once, graphviz is imported late)."""
    if "Digraph" not in _classes:
        class Digraph(gv.Digraph):
            def _repr_mimebundle_(self, include=None, exclude=None, **_):
                text = svg(self)
                return {"text/html": figure_html(text), "image/svg+xml": text, "text/plain": repr(self)}

        _classes["Digraph"] = Digraph
    return _classes["Digraph"]


def digraph(gv, name, label, **attrs):
    return _fitting(gv)(name=name, graph_attr={"label": label, "labelloc": "t", "fontname": FONT, "fontsize": "14",
                                               **attrs},
                        node_attr={"fontname": FONT, "fontsize": "10"}, edge_attr={"fontname": FONT, "fontsize": "9"})


def cluster(gv, ns, i):
    c = gv.Digraph(name=f"cluster_{ns}")
    c.attr(label=f"lk-{ns}", style="filled,rounded", fillcolor=NS_FILL[i % len(NS_FILL)], color="#adb5bd",
           fontname=FONT, fontsize="12", labeljust="l")
    return c


def svg(graph) -> str:
    """The graph as an SVG string to embed in HTML (no XML prolog). It keeps dot's size and viewBox,
    and its style lets it shrink to the width it is shown in (keeping its proportions). dot draws it,
    or in the browser Graphviz in WebAssembly (``labkit.viz.render``)."""
    from labkit.viz.render import in_use, render

    if sys.platform == "emscripten" and not in_use():  # Pyodide: the site's Graphviz, once
        from labkit.viz import wasm

        wasm.load()
    text = render(graph.source)
    return re.sub(r"<svg\b", f'<svg style="{FIT}"', text[text.index("<svg"):], count=1)
