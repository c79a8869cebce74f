"""The lifetime graph of one packet: "where did my data go, and who dropped it?"

One node per hook the skb passed, with the state of every storage slot
there; a node where skb_scrub_packet() dropped the extensions (red), or
kept a map's storage because of its keep flag (green; ``legend``); a
dashed branch where skb_clone() made a clone sharing them; grey ends where
the skb and its storage were freed. ``current=seq`` draws one event thick
and fades the later ones, with the same nodes and edges in every frame.

The designs after the RFC are drawn the same way (``params["design"]``):
the hook shows their slot (meta: the metadata buffer, gated: the gated
stash) and what its program had the kernel do (the buffer made, the skb
armed); their tracepoints' events are notes on the skb (the buffer copied,
kept by a scrub, freed; the gated entry copied, reaped), and a scrub is
green where the design's data went through it.
"""

from __future__ import annotations

from labkit.runtime.parts import FLAG_NAMES
from labkit.viz.draw import FADED, FREED, HOOK_NAMES, SKB_COLOR, STATE, cluster, digraph, esc, load_graphviz
from labkit.viz.legend import SCRUB_FILL, legend, lifetime_rows
from labkit.viz.model import build_model, pick, scrub_kind, scrub_outcomes, slots_of

BORDER = {"drops": "#a61e1e", "keeps": "#1b5e20", "some": "#1b5e20"}


def _scrub_said(outcome) -> str:
    """The scrub node's last lines: which maps' storage it kept and dropped."""
    if not outcome:
        return ""
    kept = sorted({m for m, _ in outcome["kept"]})
    dropped = sorted({m for m, _ in outcome["dropped"]})
    return "".join(f"\\n{verb} {', '.join(ms)}" for verb, ms in (("keeps", kept), ("drops", dropped)) if ms)


IN_HOOK_SAYS = {"meta_create": "bpf_dynptr_from_skb_ext(F_CREATE) made the buffer",
                "gated_arm": "bpf_trace_skb() = {err}: armed"}


def _hook_label(e, slots, show_mark, faded, hosted=()):
    hook, dev = esc(HOOK_NAMES.get(e.get("hook"), e.get("hook"))), esc(e.get("ifname") or "")
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
    for h in hosted:  # what the hook's program had the kernel do, said by its tracepoint
        if h.get("kind") in IN_HOOK_SAYS:
            said = esc(IN_HOOK_SAYS[h["kind"]].format(err=h.get("err")))
            rows.append(f'<TR><TD COLSPAN="2"><FONT POINT-SIZE="9" COLOR="{FADED[1] if faded else "#495057"}">'
                        f'{said}</FONT></TD></TR>')
    return '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2" CELLPADDING="3">' + "".join(rows) + "</TABLE>>"


def _note(e, skb) -> str:
    """The text of a note: what a tracepoint said about the skb's data."""
    kind, where, reason = e.get("kind"), e.get("where"), e.get("reason")
    if kind == "gated_copy":
        return "skb_gated:skb_copy\\n" + (f"entry copied to {skb}" if e.get("entry") is not None else "nothing stashed")
    if kind == "gated_free":
        return "skb_gated:skb_free\\n" + (f"entry reaped in {where}" if e.get("reaped") is not None
                                          else f"nothing to reap, in {where}")
    return {"storage_free": f"{e.get('map') or 'storage'} freed\\nin {where}",
            "stash_clean": f"stash entry removed\\nat {e.get('hook')}",
            "storage_alloc": f"{e.get('map')} allocated\\nin {where}",
            "storage_clone": f"{e.get('map')} copied\\nto the clone (BPF_F_CLONE)",
            "storage_scrub": f"{e.get('map')} " + ("kept" if e.get("kept") else "dropped") + f"\\n{reason} scrub",
            "report": f"your lab_report()\\n{e.get('tag')} = {num(e.get('value'), e.get('tag'))}",
            "meta_copy": f"buffer copied to\\n{skb}'s own block",
            "meta_scrub": f"buffer kept\\n{reason} scrub",
            "meta_free": f"buffer freed\\nin {where}",
            "gated_scrub": f"skb_gated:skb_scrub\\nentry untouched ({reason})",
            }.get(kind, kind)


def _node(n, when, slots, show_mark):
    e, role, faded = n["event"], n["role"], when == "later"
    ink = FADED[1] if faded else "#212529"
    a = {"id": n.get("id", ""), "fontcolor": ink, "color": ink, "penwidth": "3" if when == "now" else "1",
         "style": "filled,bold" if when == "now" else "filled", "fillcolor": "white", "shape": "box"}
    if role == "hook":
        a.update(label=_hook_label(e, slots, show_mark, faded, n.get("hosted", ())), style=a["style"] + ",rounded",
                 margin="0.04")
    elif role == "scrub":
        kind, did = scrub_kind(n.get("outcome")), _scrub_said(n.get("outcome"))
        a.update(label=f"skb_scrub_packet()\\nfrom {e.get('where')}\\nxnet={int(bool(e.get('xnet')))}" + did,
                 fillcolor=FADED[0] if faded else SCRUB_FILL[kind], fontcolor=ink if faded else "white",
                 color=ink if faded else BORDER[kind], fontsize="9", margin="0.06,0.03", height="0.3")
        if kind == "some" and not faded:
            a["style"] += ",striped"
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
        a.update(label=_note(e, n.get("skb")), shape="note", fontsize="9", fillcolor=FADED[0] if faded else "#e9ecef",
                 color=FADED[1] if faded else FREED, style=a["style"] + ",dashed" if when != "now" else a["style"])
    return a


def num(v, tag=None):
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


def lifetime_graph(log, packet=None, current=None, legend_below=False):
    """The lifetime graph of one packet (default: the first); ``current`` is the seq of the step to highlight.
    legend_below: the legend under the graph, not beside it (a narrow graph, for side by side)."""
    gv = load_graphviz()
    packet = pick(log, packet)
    nodes, edges, hosts = build_model(log, packet) if packet is not None else ({}, [], {})
    said = scrub_outcomes(log)
    for n in nodes.values():
        if n["role"] == "scrub":
            n["outcome"] = said.get(n["seq"])
    slots, show_mark = slots_of(log)
    focus = hosts.get(current, f"ev{current}")  # an allocation is shown by the hook it happened in

    def when(seq, nid=None):
        if seq == current or nid == focus:
            return "now"
        return "later" if current is not None and seq > current else "done"

    g = digraph(gv, f"lifetime_p{packet}", _title(log, packet) if packet is not None else "no packet in this log",
                 nodesep="0.25", ranksep="0.3")
    clusters = {}
    for nid, n in nodes.items():
        if n["ns"] is not None and n["ns"] not in clusters:
            clusters[n["ns"]] = cluster(gv, n["ns"], len(clusters))
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
    outcomes = [n["outcome"] for n in nodes.values() if n["role"] == "scrub"]
    shown = {"states": {((n["event"].get("maps") or {}).get(s) or {}).get("state", "absent")
                        for n in nodes.values() if n["role"] == "hook" for s in slots},
             "notes": {n["event"].get("kind") for n in nodes.values() if n["role"] == "leaf"},
             "clone": any(ed["role"] == "clone" for ed in edges) or any(n["role"] == "clone" for n in nodes.values()),
             "slot": log.design_slot()}
    key = {"label": legend(lifetime_rows(outcomes, shown, stepping=current is not None)), "shape": "plain",
           "id": "legend"}
    g.node("legend", **key)
    if legend_below:  # under every end of the graph: invisible edges from each
        tails = {ed["tail"] for ed in edges}
        for nid in nodes:
            if nid not in tails:
                g.edge(nid, "legend", style="invis")
    return g

