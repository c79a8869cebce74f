"""Pictures of a run: the lifetime graph of one packet, and a scenario's topology.

The names to use (``viz.lifetime_graph``, ``viz.topology_graph``, ``viz.svg``,
``viz.frames``, ``viz.frame_details``, ...) are all here; each part reads on
its own:

``viz_draw``      colours, graphviz, ``svg()``: an SVG that shrinks to the output's width
``viz_render``    DOT text to SVG: dot, or Graphviz in WebAssembly in the browser (``use()``)
``viz_model``     which packet an event is of, skb names, the graph's nodes and edges, the scrubs' outcomes
``viz_lifetime``  the lifetime graph of one packet (``current=seq``: one step of it)
``viz_legend``    the legends, built from what a graph shows (a scrub that keeps storage is not red)
``viz_details``   what one event means, for the step-through's details pane
``viz_topology``  a scenario before it runs
"""

from labkit.viz_details import MEANS, SAYS, frame_details
from labkit.viz_draw import (FADED, FIT, FONT, FREED, HOOK_NAMES, KEPT, NS_FILL, SCRUB, SKB_COLOR, STATE,
                             figure_html, svg)
from labkit.viz_legend import LEGEND, STEPPING, legend, lifetime_rows, scrub_rows
from labkit.viz_lifetime import lifetime_graph
from labkit.viz_model import KEEP_FLAGS, frames, scrub_kind, scrub_outcomes, skb_names
from labkit.viz_render import DOT_FIX
from labkit.viz_topology import TOPO_LEGEND, topology_graph

__all__ = ["DOT_FIX", "FADED", "FIT", "FONT", "FREED", "HOOK_NAMES", "KEEP_FLAGS", "KEPT", "LEGEND", "MEANS",
           "NS_FILL", "SAYS", "SCRUB", "SKB_COLOR", "STATE", "STEPPING", "TOPO_LEGEND", "figure_html",
           "frame_details", "frames", "legend", "lifetime_graph", "lifetime_rows", "scrub_kind", "scrub_outcomes",
           "scrub_rows", "skb_names", "svg", "topology_graph"]
