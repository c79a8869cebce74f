"""Pictures of a run: the lifetime graph of one packet, and a scenario's topology.

The lifetime graph answers "where did my data go, and who dropped it?": one
node per hook the skb passed, with the state of every storage slot there;
a red mark on the edge where skb_scrub_packet() dropped the extensions; a
dashed branch where skb_clone() made a clone sharing them; grey ends where
the skb and its storage were freed. ``current=seq`` draws one event thick
and fades the later ones, with the same nodes and edges in every frame.
"""

from __future__ import annotations

import html

from labkit.errors import MissingTool
from labkit.events import SLOTS, describe
from labkit.scenario import FLAG_NAMES

FONT = "Helvetica,Arial,sans-serif"
STATE = {"created": ("#69db7c", "#0b3d1a"), "present": ("#c3f0cb", "#0b3d1a"),
         "absent": ("#eeeeee", "#868e96"), "refused": ("#ffa94d", "#5c2a00"), "mark": ("#d0e2ff", "#1e3a8a")}
FADED = ("#f6f6f6", "#c4c4c4")  # fill, text/line of what has not happened yet
NS_FILL = ("#eef4fb", "#fdf6e3", "#f3effa", "#eefaf3")
SKB_COLOR = ("#343a40", "#7048e8", "#0c8599", "#c2255c")
SCRUB, FREED, DOT_FIX = "#e03131", "#868e96", "sudo apt-get install graphviz"
HOOK_NAMES = {"after_clone": "after bpf_clone_redirect()"}  # the same tc program, once the clone is sent


def _graphviz():
    try:
        import graphviz
        return graphviz
    except ImportError:
        raise MissingTool("the Python package graphviz is not installed", fix="pip install graphviz==0.21") from None


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _digraph(gv, name, label, **attrs):
    return gv.Digraph(name=name, graph_attr={"label": label, "labelloc": "t", "fontname": FONT, "fontsize": "14",
                                             **attrs},
                      node_attr={"fontname": FONT, "fontsize": "10"}, edge_attr={"fontname": FONT, "fontsize": "9"})


def _cluster(gv, ns, i):
    c = gv.Digraph(name=f"cluster_{ns}")
    c.attr(label=f"lk-{ns}", style="filled,rounded", fillcolor=NS_FILL[i % len(NS_FILL)], color="#adb5bd",
           fontname=FONT, fontsize="12", labeljust="l")
    return c


def _legend(rows):
    cells = "".join(f'<TR><TD BGCOLOR="{fill}"><FONT COLOR="{ink}" POINT-SIZE="9">{_esc(k)}</FONT></TD>'
                    f'<TD ALIGN="LEFT"><FONT POINT-SIZE="9">{_esc(v)}</FONT></TD></TR>' for k, (fill, ink), v in rows)
    return ('<<TABLE BORDER="1" COLOR="#adb5bd" CELLBORDER="0" CELLSPACING="1" CELLPADDING="2">'
            f'<TR><TD COLSPAN="2"><B>legend</B></TD></TR>{cells}</TABLE>>')


# ---- who is who: packets and skb names ----------------------------------------------------


def _attribute(log) -> list:
    """Each event's packet; an event without one takes that of the nearest event of its skb."""
    known = {}
    for i, e in enumerate(log.events):
        if e.get("packet") and e.get("skb"):
            known.setdefault(e["skb"], []).append((i, e["packet"]))
    out = []
    for i, e in enumerate(log.events):
        p = e.get("packet")
        if not p and e.get("skb") in known:
            p = min(known[e["skb"]], key=lambda c: (abs(c[0] - i), c[0] > i))[1]
        out.append(p)
    return out


def skb_names(log) -> dict:
    """(packet, skb address) -> ``skb#N``, in order of appearance (an address reused later is another skb)."""
    names = {}
    for p, e in zip(_attribute(log), log.events):
        for k in ("parent", "skb"):
            if e.get(k) and (p, e[k]) not in names:
                names[(p, e[k])] = f"skb#{len(names) + 1}"
    return names


def _pick(log, packet):
    packets = log.packets()
    if packet is None:
        return packets[0] if packets else None
    if packet not in packets:
        raise ValueError(f"packet {packet} is not in this log (packets: {', '.join(map(str, packets)) or 'none'})")
    return packet


def _events(log, packet):
    return [e for p, e in zip(_attribute(log), log.events) if p is not None and p == packet]


# ---- the model: elements of the graph, each owned by one event -------------------------------


def _model(log, packet):
    """Nodes and edges of one packet's graph. Every element has the seq of the event that makes it."""
    names = skb_names(log)
    evs = _events(log, packet)
    nodes = {"start": {"role": "start", "seq": -1, "ns": None, "event": {"packet": packet, "token": next(
        (e.get("token") for e in evs if e.get("token") is not None), None)}}}
    edges, chain, pending, clones, hosts = [], {}, {}, {}, {}

    def key(e, field="skb"):
        return (packet, e.get(field))

    def edge(tail, head, role, seq, label="", k=None):
        edges.append({"id": f"to-{head}", "tail": tail, "head": head, "role": role, "seq": seq, "label": label,
                      "skb": k})

    def add(e, role, ns=None, leaf=False):
        nid, k = f"ev{e['seq']}", key(e)
        nodes[nid] = {"role": role, "seq": e["seq"], "ns": ns, "event": e, "skb": names.get(k),
                      "parent": names.get(key(e, "parent"))}
        prev = chain.setdefault(k, [])
        if leaf:
            anchor = prev[-1] if prev else clones.get(k, ("start",))[0]
            edge(anchor, nid, "leaf", e["seq"])
            return nid
        if prev:
            edge(prev[-1], nid, "chain", e["seq"], names.get(k, ""), k)
        elif k in clones:
            anchor, ce = clones[k]
            edge(anchor, nid, "clone", ce["seq"], f"clone by {ce.get('where')}\\n{names.get(k, '')}", k)
        else:
            edge("start", nid, "chain", e["seq"], names.get(k, ""), k)
        if nodes[nid]["ns"] is None and prev:
            nodes[nid]["ns"] = nodes[prev[-1]]["ns"]
        prev.append(nid)
        return nid

    def flush(k):
        for a in pending.pop(k, []):
            add(a, "alloc", leaf=True)

    for i, e in enumerate(evs):
        kind, k = e.get("kind"), key(e)
        if kind == "storage_alloc":
            pending.setdefault(k, []).append(e)
        elif kind == "clone":
            parent = chain.get(key(e, "parent"))
            clones[k] = (parent[-1] if parent else "start", e)
            if not any(key(x) == k and x.get("kind") in ("hook", "scrub", "free") for x in evs[i + 1:]):
                add(e, "clone", e.get("ns"))  # nothing more of the clone here: it is a node of its own
        elif kind == "hook":
            nid = add(e, "hook", e.get("ns"))
            hosts.update((a["seq"], nid) for a in pending.pop(k, []))
        elif kind in ("storage_free", "stash_clean", "report", "storage_clone", "storage_scrub"):
            flush(k)
            add(e, "leaf", leaf=True)
        else:  # scrub, free, anything newer
            flush(k)
            add(e, kind if kind in ("scrub", "free") else "other", e.get("ns"))
    for k in list(pending):
        flush(k)
    for ids in chain.values():  # a scrub between two namespaces sits between their clusters
        for i, nid in enumerate(ids):
            if nodes[nid]["role"] == "scrub":
                before = [nodes[x]["ns"] for x in ids[:i] if nodes[x]["role"] != "scrub"]
                after = [nodes[x]["ns"] for x in ids[i + 1:] if nodes[x]["role"] != "scrub"]
                if before and after and before[-1] and after[0] and before[-1] != after[0]:
                    nodes[nid]["ns"] = None
    for ed in edges:  # a leaf sits by what it hangs from
        if ed["role"] == "leaf":
            nodes[ed["head"]]["ns"] = nodes[ed["tail"]]["ns"]
    return nodes, edges, hosts


def frames(log, packet=None) -> list[int]:
    """The event seqs a step-through walks for one packet (an allocation folded into its hook is no step)."""
    packet = _pick(log, packet)
    hosts = _model(log, packet)[2] if packet is not None else {}
    return [e["seq"] for e in _events(log, packet) if e["seq"] not in hosts] if packet is not None else []


def _slots(log):
    used = [s for s in SLOTS if s == "storage_a" or any(
        ((e.get("maps") or {}).get(s) or {}).get("state", "absent") != "absent" for e in log.events)]
    return used, any(e.get("mark") for e in log.events if e.get("kind") == "hook")


# ---- drawing -----------------------------------------------------------------------------------


def _hook_label(e, slots, show_mark, faded):
    hook, dev = _esc(HOOK_NAMES.get(e.get("hook"), e.get("hook"))), _esc(e.get("ifname") or "")
    rows = [f'<TR><TD COLSPAN="2" CELLPADDING="2"><B>{hook}</B><BR/><FONT POINT-SIZE="10">{dev}</FONT></TD></TR>']

    def row(name, state, text):
        fill, ink = FADED if faded else STATE[state]
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9" COLOR="{FADED[1] if faded else "#495057"}">'
                    f'{name}</FONT></TD><TD BGCOLOR="{fill}" ALIGN="LEFT"><FONT COLOR="{ink}" POINT-SIZE="10">'
                    f'{text}</FONT></TD></TR>')

    for s in slots:
        m = (e.get("maps") or {}).get(s) or {"state": "absent"}
        st, val = m.get("state", "absent"), m.get("value")
        text = {"created": "<B>created</B>", "refused": "refused: shared with clone"}.get(st, st)
        if st in ("created", "present") and isinstance(val, int):
            text += f" {val:#x}"
        row(s, st if st in STATE else "absent", text)
    if show_mark:
        row("mark", "mark" if e.get("mark") else "absent", f"{e.get('mark') or 0:#x}")
    if e.get("clone_ret") is not None:
        ret = f'bpf_clone_redirect() = {e["clone_ret"]}'
        rows.append(f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="9">{ret}</FONT></TD></TR>')
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="3">' + "".join(rows) + "</TABLE>>"


def _node(n, when, slots, show_mark):
    e, role, faded = n["event"], n["role"], when == "later"
    ink = FADED[1] if faded else "#212529"
    a = {"id": n.get("id", ""), "fontcolor": ink, "color": ink, "penwidth": "3" if when == "now" else "1",
         "style": "filled,bold" if when == "now" else "filled", "fillcolor": "white", "shape": "box"}
    if role == "hook":
        a.update(label=_hook_label(e, slots, show_mark, faded), style=a["style"] + ",rounded", margin="0.04")
    elif role == "scrub":
        a.update(label=f"skb_scrub_packet()\\nfrom {e.get('where')}\\nxnet={int(bool(e.get('xnet')))}",
                 fillcolor=FADED[0] if faded else SCRUB, fontcolor=ink if faded else "white",
                 color=ink if faded else "#a61e1e", fontsize="9", margin="0.06,0.03", height="0.3")
    elif role == "start":
        tok = e.get("token")
        a.update(label=f"packet {e.get('packet')}" + (f"\\ntoken {tok:#x}" if isinstance(tok, int) else ""),
                 shape="cds", fillcolor="#f1f3f5", fontsize="10")
    elif role == "free":
        a.update(label=f"{n['skb']} freed\\nin {e.get('where')}", shape="box", style=a["style"] + ",rounded",
                 fillcolor=FADED[0] if faded else "#f1f3f5", fontsize="9", color=FADED[1] if faded else FREED)
    elif role == "clone":
        a.update(label=f"{n['skb']}: a clone\\nof {n['parent']}", fontsize="9")
    else:
        text = {"storage_free": f"{e.get('map') or 'storage'} freed\\nin {e.get('where')}",
                "stash_clean": f"stash entry removed\\nat {e.get('hook')}",
                "storage_alloc": f"{e.get('map')} allocated\\nin {e.get('where')}",
                "storage_clone": f"{e.get('map')} copied\\nto the clone (BPF_F_CLONE)",
                "storage_scrub": f"{e.get('map')} " + ("kept" if e.get("kept") else "dropped") +
                                 f"\\n{e.get('reason')} scrub",
                "report": f"your lab_report()\\n{e.get('tag')} = {_num(e.get('value'), e.get('tag'))}",
                }.get(e.get("kind"), e.get("kind"))
        a.update(label=text, shape="note", fontsize="9", fillcolor=FADED[0] if faded else "#e9ecef",
                 color=FADED[1] if faded else FREED, style=a["style"] + ",dashed" if when != "now" else a["style"])
    return a


def _num(v, tag=None):
    if tag == "delay_ns" and isinstance(v, int):
        return f"{v / 1000:.1f} µs"
    return f"{v:#x}" if isinstance(v, int) and v > 9 else str(v)


def _title(log, packet):
    h = log.header
    params = ", ".join(f"{k}={v}" for k, v in (h.get("params") or {}).items())
    name = f"{h.get('scenario', 'run')}" + (f" ({params})" if params else "")
    more = f" of {len(log.packets())}" if len(log.packets()) > 1 else ""
    flags = "; ".join(f"{slot} has " + " | ".join(FLAG_NAMES.get(n, n) for n in names)
                      for slot, names in (h.get("map_flags") or {}).items())
    return (f"{name}: packet {packet}{more}" + (f" on {h['kernel']}" if h.get("kernel") else "")
            + (f"\n{flags}" if flags else ""))


LEGEND = [("created 0x…", STATE["created"], "storage made here, with its value"),
          ("present 0x…", STATE["present"], "storage found, with its value"),
          ("absent", STATE["absent"], "no storage on this skb"),
          ("refused", STATE["refused"], "shares extensions with a clone"),
          ("skb_scrub_packet()", (SCRUB, "white"), "drops the extensions: storage gone"),
          ("- - - ▸", ("white", "#343a40"), "clone: new skb, same extensions"),
          ("storage freed", ("#e9ecef", "#495057"), "where the storage went")]
STEPPING = [("bold", ("white", "#212529"), "the current event"), ("pale", FADED, "not happened yet")]


def lifetime_graph(log, packet=None, current=None):
    """The lifetime graph of one packet (default: the first); ``current`` is the seq of the step to highlight."""
    gv = _graphviz()
    packet = _pick(log, packet)
    nodes, edges, hosts = _model(log, packet) if packet is not None else ({}, [], {})
    slots, show_mark = _slots(log)
    focus = hosts.get(current, f"ev{current}")  # an allocation is shown by the hook it happened in

    def when(seq, nid=None):
        if seq == current or nid == focus:
            return "now"
        return "later" if current is not None and seq > current else "done"

    g = _digraph(gv, f"lifetime_p{packet}", _title(log, packet) if packet is not None else "no packet in this log",
                 nodesep="0.25", ranksep="0.3")
    clusters = {}
    for nid, n in nodes.items():
        if n["ns"] is not None and n["ns"] not in clusters:
            clusters[n["ns"]] = _cluster(gv, n["ns"], len(clusters))
        clusters.get(n["ns"], g).node(nid, **_node({**n, "id": nid}, when(n["seq"], nid), slots, show_mark))
    for c in clusters.values():
        g.subgraph(c)
    colours = {}
    for ed in edges:
        w = when(ed["seq"])
        ink = FADED[1] if w == "later" else (FREED if ed["role"] == "leaf" else
                                             colours.setdefault(ed["skb"], SKB_COLOR[len(colours) % len(SKB_COLOR)]))
        style = {"clone": "dashed", "leaf": "dotted"}.get(ed["role"], "solid")
        g.edge(ed["tail"], ed["head"], id=ed["id"], label=ed["label"], color=ink, fontcolor=ink,
               penwidth="3" if w == "now" else ("1" if ed["role"] == "leaf" else "1.6"),
               style=style + (",bold" if w == "now" else ""), arrowhead="none" if ed["role"] == "leaf" else "normal")
    g.node("legend", label=_legend(LEGEND + (STEPPING if current is not None else [])), shape="plain", id="legend")
    return g


SAYS = {"clone": "{skb} is a clone of {parent}, made by {where}() through skb_clone(). Both share one extension "
                 "block: while both live, storage is refused on both.",
        "storage_free": "{skb}'s extension block is freed in {where}(): the storage is gone.",
        "storage_clone": "skb_clone() copies the {map} element to the clone {skb}: the map has BPF_F_CLONE, so the "
                         "clone gets an extension block of its own and both keep using their storage.",
        "free": "{skb} is released in {where}().",
        "stash_clean": "The side stash entry keyed by {skb}'s address is removed at the {hook} tracepoint.",
        "storage_alloc": "A {map} element is allocated on {skb} in {where}().",
        "report": "Your program reported {tag} = {value} on {skb} (lab_report() in {obj})."}
MEANS = {"created": "created here by this program", "present": "there, as written earlier", "absent": "none on this "
         "skb", "refused": "refused: the skb shares its extension block with a clone (delete says -EOPNOTSUPP)"}


def frame_details(log, seq) -> str:
    """What one event means, in a few plain lines, for the step-through's details pane."""
    where = {e.get("seq"): (p, e) for p, e in zip(_attribute(log), log.events)}
    if seq not in where:
        raise ValueError(f"no event {seq} in this log")
    p, e = where[seq]
    names = {a: n for (q, a), n in skb_names(log).items() if q == p}
    skb, kind = names.get(e.get("skb"), "the skb"), e.get("kind")
    place = " ".join(x for x in (f"on {e['ifname']}" if e.get("ifname") else "",
                                 f"in lk-{e['ns']}" if e.get("ns") else "") if x)
    lines = [f"event {seq} · {skb} · packet {p} · {e.get('t_us', 0):.1f} µs"]
    if kind == "hook":
        lines.append(f"{skb} seen at {HOOK_NAMES.get(e.get('hook'), e.get('hook'))} {place}:")
        for s in _slots(log)[0]:
            m = (e.get("maps") or {}).get(s) or {"state": "absent"}
            val = f" (value {m['value']:#x})" if isinstance(m.get("value"), int) else ""
            said = "no entry for this skb's address" if (s, m.get("state")) == ("stash", "absent") else None
            lines.append(f"  {s}: {said or MEANS.get(m.get('state'), m.get('state'))}{val}")
        lines.append(f"  skb->mark = {e.get('mark') or 0:#x}")
        hosts = _model(log, p)[2]
        lines += [f"  {where[a][1].get('map')} was allocated for it in {where[a][1].get('where')}()"
                  for a, h in hosts.items() if h == f"ev{seq}"]
        if e.get("clone_ret") is not None:
            lines.append(f"  bpf_clone_redirect() returned {e['clone_ret']}")
    elif kind == "scrub":
        x = int(bool(e.get("xnet")))
        lines.append(f"skb_scrub_packet(xnet={x}) called from {e.get('where')}() {place}: the skb's extensions "
                     "are dropped, and its storage with them. " +
                     ("xnet=1 (crossing namespaces) clears skb->mark too." if x else "xnet=0 keeps skb->mark."))
    elif kind == "storage_scrub":
        flag = {"tunnel": "BPF_F_SKB_KEEP_TUNNEL", "netns": "BPF_F_SKB_KEEP_NETNS"}.get(e.get("reason"))
        if e.get("kept"):
            lines.append(f"The {e.get('reason')} scrub from {e.get('where')}() keeps the {e.get('map')} element on "
                         f"{skb}: its map has {flag}" + (" and BPF_F_SKB_KEEP_NETNS (the tunnel crosses namespaces)"
                                                         if e.get("xnet") and e.get("reason") == "tunnel" else "")
                         + ". It moves to a fresh extension block.")
        else:
            why = (f"its map does not have {flag}" if flag else "nothing keeps storage across forwarding within "
                   "one namespace")
            lines.append(f"The {e.get('reason')} scrub from {e.get('where')}() drops the {e.get('map')} element on "
                         f"{skb}: {why}.")
    elif kind in SAYS:
        lines.append(SAYS[kind].format(skb=skb, parent=names.get(e.get("parent"), "its parent"), where=e.get("where"),
                                       hook=e.get("hook"), map=e.get("map"), tag=e.get("tag"),
                                       value=_num(e.get("value"), e.get("tag")), obj=e.get("obj")))
    if e.get("stack"):
        lines.append("called from: " + " ← ".join(e["stack"]))
    lines.append(describe(e, names).strip())
    return "\n".join(lines)


# ---- a scenario before it runs -----------------------------------------------------------------


def _acts(h) -> str:
    acts = ["write " + "+".join(h.write) if h.write else "", "delete " + "+".join(h.delete) if h.delete else "",
            f"mark={h.mark:#x}" if h.mark else "", f"clone_to {h.clone_to}" if h.clone_to else "",
            f"redirect_peer {h.redirect_peer}" if h.redirect_peer else ""]
    return ", ".join(a for a in acts if a) or "observe"


def _box(title, sub, rows, fill="white"):
    cells = "".join(f'<TR><TD ALIGN="LEFT" BGCOLOR="{c}"><FONT POINT-SIZE="9">{_esc(r)}</FONT></TD></TR>'
                    for r, c in rows)
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="1" CELLPADDING="2" BGCOLOR="{fill}">'
            f'<TR><TD><B>{_esc(title)}</B></TD></TR><TR><TD><FONT POINT-SIZE="9" COLOR="#495057">{_esc(sub)}'
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
    gv = _graphviz()
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
    g = _digraph(gv, f"topology_{scenario.name}", f"{scenario.name}: {scenario.description}", rankdir="LR",
                 nodesep="0.3", ranksep="0.5")
    g.attr("node", shape="box", style="rounded,filled", fillcolor="white")
    for i, ns in enumerate(topo.netns):
        c = _cluster(gv, ns, i)
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
    g.node("legend", shape="plain", style="", label=_legend(TOPO_LEGEND))
    return g


def svg(graph) -> str:
    """The graph as an SVG string to embed in HTML (no XML prolog)."""
    from labkit import tools

    gv = _graphviz()
    if not tools.which("dot"):
        raise MissingTool("dot (graphviz) not found, it draws the lab's graphs", fix=DOT_FIX)
    try:
        text = graph.pipe(format="svg").decode("utf-8")
    except gv.ExecutableNotFound:
        raise MissingTool("dot (graphviz) not found, it draws the lab's graphs", fix=DOT_FIX) from None
    return text[text.index("<svg"):]
