"""The lifetime graph's model: which packet each event belongs to, the skbs' names, and the
nodes and edges of one packet's graph, each owned by the event that makes it. No drawing here."""

from __future__ import annotations

from labkit.runtime.parts import SLOTS

# The later designs' tracepoint events drawn as notes on their skb (the metadata buffer's
# bpf_skb_ext:* and the gated skb_gated:*); a buffer made and an skb armed inside a hook's
# program are part of that hook's node, as an allocation is.
DESIGN_NOTES = ("meta_copy", "meta_scrub", "meta_free", "gated_copy", "gated_scrub", "gated_free")
IN_HOOK = ("storage_alloc", "meta_create", "gated_arm")


def attribute_to(log) -> list:
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
    for p, e in zip(attribute_to(log), log.events):
        for k in ("parent", "skb"):
            if e.get(k) and (p, e[k]) not in names:
                names[(p, e[k])] = f"skb#{len(names) + 1}"
    return names


def pick(log, packet):
    packets = log.packets()
    if packet is None:
        return packets[0] if packets else None
    if packet not in packets:
        raise ValueError(f"packet {packet} is not in this log (packets: {', '.join(map(str, packets)) or 'none'})")
    return packet


def _events(log, packet):
    return [e for p, e in zip(attribute_to(log), log.events) if p is not None and p == packet]


# ---- the model: elements of the graph, each owned by one event -------------------------------


def build_model(log, packet):
    """Nodes and edges of one packet's graph. Every element has the seq of the event that makes it."""
    names = skb_names(log)
    evs = _events(log, packet)
    nodes = {"start": {"role": "start", "seq": -1, "ns": None, "event": {"packet": packet, "token": next(
        (e.get("token") for e in evs if e.get("token") is not None), None)}}}
    edges, chain, pending, clones, hosts = [], {}, {}, {}, {}
    moved = {}  # a block the metadata buffer was copied out of -> the note that copied it

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

    def host(e, nid):  # e happened inside what node nid shows: folded into it, no step of its own
        hosts[e["seq"]] = nid
        nodes[nid].setdefault("hosted", []).append(e)

    def flush(k):
        for a in pending.pop(k, []):
            add(a, "alloc", leaf=True)

    for i, e in enumerate(evs):
        kind, k = e.get("kind"), key(e)
        if kind in IN_HOOK:
            pending.setdefault(k, []).append(e)
        elif kind == "clone":
            parent = chain.get(key(e, "parent"))
            clones[k] = (parent[-1] if parent else "start", e)
            if not any(key(x) == k and x.get("kind") in ("hook", "scrub", "free") for x in evs[i + 1:]):
                add(e, "clone", e.get("ns"))  # nothing more of the clone here: it is a node of its own
        elif kind == "hook":
            nid = add(e, "hook", e.get("ns"))
            for a in pending.pop(k, []):
                host(a, nid)
        elif kind == "meta_free" and e.get("block") in moved:  # the old block of a copy: one note says both
            host(e, moved.pop(e["block"]))
        elif kind in ("storage_free", "stash_clean", "report", "storage_clone", "storage_scrub") + DESIGN_NOTES:
            flush(k)
            nid = add(e, "leaf", leaf=True)
            if kind in ("meta_scrub", "meta_copy") and e.get("from"):
                moved[e["from"]] = nid
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
    packet = pick(log, packet)
    hosts = build_model(log, packet)[2] if packet is not None else {}
    return [e["seq"] for e in _events(log, packet) if e["seq"] not in hosts] if packet is not None else []


def slots_of(log):
    """The slots a graph shows (the run's design's always, others where a hook found something), and
    whether it shows skb->mark."""
    mine = log.design_slot()
    used = [s for s in SLOTS if s == mine or any(
        ((e.get("maps") or {}).get(s) or {}).get("state", "absent") != "absent" for e in log.events)]
    return used, any(e.get("mark") for e in log.events if e.get("kind") == "hook")



KEEP_FLAGS = {"tunnel": "BPF_F_SKB_KEEP_TUNNEL", "netns": "BPF_F_SKB_KEEP_NETNS"}
# Why a later design's data is kept through any scrub (not a flag of a map).
KEEP_WHY = {"meta": "every scrub keeps the metadata buffer", "gated": "the stash is a hash map outside the skb"}


def scrub_outcomes(log) -> dict:
    """What each skb_scrub_packet() did to the storage, from the lab kernel's storage_scrub events:
    {scrub seq: {"kept": [(map, reason)], "dropped": [(map, reason)]}}. The events of one scrub follow
    it on the same skb and name the same caller; a scrub with none found nothing to keep or drop (or
    the kernel has no such tracepoint), and a map with a keep flag for the reason is kept. The later
    designs' scrub events keep theirs ("meta", "gated": ``KEEP_WHY``)."""
    out, last = {}, {}
    for p, e in zip(attribute_to(log), log.events):
        k = (p, e.get("skb"))
        if e.get("kind") == "scrub":
            last[k] = e
            out[e["seq"]] = {"kept": [], "dropped": []}
        elif e.get("kind") == "storage_scrub" and k in last and last[k].get("where") == e.get("where"):
            out[last[k]["seq"]]["kept" if e.get("kept") else "dropped"].append((e.get("map"), e.get("reason")))
        elif e.get("kind") in ("meta_scrub", "gated_scrub") and k in last and last[k].get("where") == e.get("where"):
            out[last[k]["seq"]]["kept"].append((e["kind"].split("_")[0], e.get("reason")))
    return out


def scrub_kind(outcome) -> str:
    """``keeps`` (every element it met is kept), ``some`` (kept and dropped) or ``drops``."""
    if outcome and outcome["kept"]:
        return "some" if outcome["dropped"] else "keeps"
    return "drops"
