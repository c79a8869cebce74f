"""Pictures of a run: the lifetime graph of one packet, and a scenario's topology.

The names to use (``viz.lifetime_graph``, ``viz.topology_graph``, ``viz.svg``,
``viz.frames``, ``viz.frame_details``, ...) are all here; each part reads on
its own:

``draw``      colours, graphviz, ``svg()``: an SVG that shrinks to the output's width
``render``    DOT text to SVG: dot, or Graphviz in WebAssembly in the browser (``use()``)
``model``     which packet an event is of, skb names, the graph's nodes and edges, the scrubs' outcomes
``lifetime``  the lifetime graph of one packet (``current=seq``: one step of it)
``legend``    the legends, built from what a graph shows (a scrub that keeps storage is not red)
``details``   what one event means, for the step-through's details pane
``topology``  a scenario before it runs
``wasm``      Graphviz in WebAssembly, in the browser
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "details": "MEANS SAYS frame_details",
    "draw": "FADED FIT FREED HOOK_NAMES KEPT NS_FILL SCRUB SKB_COLOR STATE figure_html svg",
    "legend": "DROPS STEPPING legend lifetime_rows scrub_rows",
    "lifetime": "lifetime_graph",
    "model": "KEEP_FLAGS KEEP_WHY frames scrub_kind scrub_outcomes skb_names slots_of",
    "render": "DOT_FIX FONT",
    "topology": "TOPO_LEGEND topology_graph",
})
