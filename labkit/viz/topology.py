"""A scenario before it runs: namespaces, devices, links, clone points, hooks and the packets' way."""

from __future__ import annotations

from labkit.viz.draw import cluster, digraph, esc, load_graphviz
from labkit.viz.legend import legend


def _acts(h) -> str:
    acts = ["write " + "+".join(h.write) if h.write else "", "delete " + "+".join(h.delete) if h.delete else "",
            f"mark={h.mark:#x}" if h.mark else "", f"clone_to {h.clone_to}" if h.clone_to else "",
            f"redirect_peer {h.redirect_peer}" if h.redirect_peer else ""]
    return ", ".join(a for a in acts if a) or "observe"


def _box(title, sub, rows, fill="white"):
    cells = "".join(f'<TR><TD ALIGN="LEFT" BGCOLOR="{c}"><FONT POINT-SIZE="9">{esc(r)}</FONT></TD></TR>'
                    for r, c in rows)
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="2" BGCOLOR="{fill}">'
            f'<TR><TD><B>{esc(title)}</B></TD></TR><TR><TD><FONT POINT-SIZE="9" COLOR="#495057">{esc(sub)}'
            f'</FONT></TD></TR>{cells}</TABLE>>')


def _first_hop(topo, p):
    """The device a packet leaves its namespace by."""
    if p.via:
        return (p.src, p.via)
    dst = topo.addresses().get(p.dst)
    for t in topo.tunnels:
        if dst and dst[1] == t.name and p.src in (t.ns_a, t.ns_b):
            return (p.src, t.name)
    ends = [((v.ns_a, v.a), (v.ns_b, v.b)) for v in topo.veths]
    for one, other in ends + [(o, n) for n, o in ends]:
        if dst == other and one[0] == p.src:
            return one
    return next((end for pair in ends for end in pair if end[0] == p.src), None)


TOPO_LEGEND = [("hook", ("#d3f9d8", "#212529"), "writes storage or mark"),
               ("hook", ("#f1f3f5", "#212529"), "observes (or deletes)"),
               ("━━▸", ("white", "#1c7ed6"), "where the packets go"),
               ("- - ▸", ("white", "#e8590c"), "a clone is made here")]


def topology_graph(scenario):
    """A scenario before it runs: namespaces, devices, links, clone points, hooks and the packets' way."""
    gv = load_graphviz()
    topo = scenario.topology
    devices = {k: v for k, v in topo.devices().items() if v != "loopback"}
    ids = {k: f"{k[0]}__{k[1]}".replace("-", "_") for k in devices}
    rows = {}  # (ns, dev) or (ns, None) for the socket -> hook rows
    for h in scenario.hooks:
        dev = h.dev if h.at.startswith("tc/") or h.at == "af_packet" else None
        rows.setdefault((h.ns, dev), []).append((f"{h.at}: {_acts(h)}", "#d3f9d8" if h.write or h.mark else "#f1f3f5"))
    for a in scenario.attach:
        rows.setdefault((a.ns, a.dev), []).append((f"{a.at}: your program {a.prog}", "#fff3bf"))
    addrs = {v: k for k, v in topo.addresses().items()}
    receivers = {topo.addresses()[p.dst] for p in scenario.packets if p.dst in topo.addresses()}
    g = digraph(gv, f"topology_{scenario.name}", f"{scenario.name}: {scenario.description}", rankdir="LR",
                 nodesep="0.3", ranksep="0.5")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="white")
    for i, ns in enumerate(topo.netns):
        c = cluster(gv, ns, i)
        for (dns, dev), obj in devices.items():
            if dns == ns:
                what = {"Veth": "veth", "Tunnel": f"{getattr(obj, 'kind', '')} tunnel", "Sink": "sink" + (
                    " (holds what it gets)" if getattr(obj, "hold", False) else "")}.get(type(obj).__name__, "device")
                sub = what + (f" {addrs[(ns, dev)]}" if (ns, dev) in addrs else "")
                c.node(ids[(ns, dev)], label=_box(dev, sub, rows.get((ns, dev), [])), margin="0.05")
        if (ns, None) in rows or any(r[0] == ns for r in receivers):
            c.node(f"{ns}__sock", label=_box(f"socket in lk-{ns}", "receives", rows.get((ns, None), [])),
                   shape="component", style="filled", fillcolor="#fff9db", margin="0.05")
        for i_t, t in enumerate(scenario.taps):
            if t.ns == ns:
                c.node(f"tap{i_t}", label=f"AF_PACKET tap\\non {t.dev}\\n(gets a clone)", shape="component",
                       style="filled", fillcolor="#ffe8cc")
        for i_p, p in enumerate(scenario.packets):
            if p.src == ns:
                c.node(f"src{i_p}", label=f"send {p.count} × {p.proto}\\n{p.size} B to {p.dst}", shape="cds",
                       style="filled", fillcolor="#e7f5ff")
        g.subgraph(c)
    for v in topo.veths:
        g.edge(ids[(v.ns_a, v.a)], ids[(v.ns_b, v.b)], label="veth", dir="none", penwidth="2.5", color="#495057")
    tun = {"color": "#1971c2", "fontcolor": "#1971c2"}
    for t in topo.tunnels:
        a, b = ids[(t.ns_a, t.name)], ids[(t.ns_b, t.name)]
        g.edge(a, b, label=f"{t.kind} tunnel", style="dashed", penwidth="2", constraint="false", **tun)
        ua, ub = topo.addresses().get(t.under_a), topo.addresses().get(t.under_b)
        if ua in ids:
            g.edge(a, ids[ua], label="encap over", style="dotted", **tun)
        if ub in ids:
            g.edge(ids[ub], b, label="decap", style="dotted", **tun)
    clone = {"style": "dashed", "color": "#e8590c", "fontcolor": "#e8590c"}
    for m in scenario.mirrors:
        g.edge(ids[(m.ns, m.dev)], ids[(m.ns, m.to)], label="tc mirred mirror\\n(a clone)", **clone)
    for h in scenario.hooks:
        if h.clone_to:
            g.edge(ids[(h.ns, h.dev)], ids[(h.ns, h.clone_to)], label="bpf_clone_redirect\\n(a clone)", **clone)
        if h.redirect_peer:
            v = devices[(h.ns, h.redirect_peer)]
            peer = (v.ns_b, v.b) if (v.ns_a, v.a) == (h.ns, h.redirect_peer) else (v.ns_a, v.a)
            g.edge(ids[(h.ns, h.dev)], ids[peer], label="bpf_redirect_peer", style="dashed", **tun)
    for i_t, t in enumerate(scenario.taps):
        g.edge(ids[(t.ns, t.dev)], f"tap{i_t}", label="a clone", **clone)
    way = {"color": "#1c7ed6", "penwidth": "2", "arrowsize": "0.8"}
    for i_p, p in enumerate(scenario.packets):
        if _first_hop(topo, p) in ids:
            g.edge(f"src{i_p}", ids[_first_hop(topo, p)], **way)
    for ns, dev in receivers:
        g.edge(ids[(ns, dev)], f"{ns}__sock", **way)
    g.node("legend", shape="plain", style="", label=legend(TOPO_LEGEND))
    return g
