"""The observer's records as the log's events (see labkit.runtime.events): the callers
named, storage events given their skb and packet, tracepoint events settled in
order; your programs' lab_report() records merged in as "report" events."""

from __future__ import annotations

import os
import struct

from labkit.runtime.parts import SLOTS
from labkit.runtime.records import SCRUB_REASONS, Record
from labkit.runtime.symbols import Symbols, name_callers


def to_events(records: list[Record], tokens: list[int], netns_names: dict) -> list[dict]:
    """Turn decoded lab_records into the log's events (see labkit.runtime.events)."""
    number = {tok: i + 1 for i, tok in enumerate(tokens)}
    t0 = records[0].t_ns if records else 0
    events = []
    blocks = {}  # skb->extensions -> the last event that had it
    pending = []  # storage_alloc events waiting for the hook event that shows their block
    meta_owner = {}  # extension block -> the skb whose metadata buffer it held
    for r in records:
        e = {"seq": len(events), "t_us": round((r.t_ns - t0) / 1000, 1), "kind": r.kind}
        if r.kind == "meta_free":  # the tracepoint names the block alone
            callers = name_callers(r.stack)
            e.update({"packet": number.get(r.packet), "token": r.packet or None, "skb": meta_owner.get(r.ext),
                      "block": hex(r.ext), "where": callers[0] if callers else "__skb_ext_put",
                      "stack": callers[:5], "via": "tracepoint"})
            events.append(e)
            continue
        if r.kind.startswith("tp_"):
            e.update(from_tracepoint(r, number))
            if e["kind"] == "storage_free" and e["skb"] is None:
                owned_by(e, blocks)
            events.append(e)
            continue
        if r.kind in ("storage_free", "storage_alloc"):
            # r.ext is the storage's chunk inside an extension block some
            # skb points at: the nearest block below it. An allocation comes
            # before the hook event that shows the block, a free after.
            callers = name_callers(r.stack)
            e.update({"packet": None, "token": None, "skb": None, "where": callers[0] if callers else None,
                      "stack": callers[:5], "chunk": r.ext})
            if r.kind == "storage_alloc":
                e["map"] = r.ifname
                pending.append(e)
            else:
                owned_by(e, blocks)
            events.append(e)
            continue
        e.update({"packet": number.get(r.packet), "token": r.packet, "skb": hex(r.skb),
                  "ifname": r.ifname or None, "ns": netns_names.get(r.netns), "mark": r.mark})
        if r.kind == "hook":
            e["hook"] = r.hook
            e["maps"] = {slot: ({"state": r.state[i], "value": r.value[i]} if r.state[i] in ("present", "created")
                                else {"state": r.state[i]}) for i, slot in enumerate(SLOTS)}
            if r.hook == "after_clone":
                e["clone_ret"] = r.flags - 1
        elif r.kind == "clone":
            e["parent"] = hex(r.other)
            callers = name_callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "scrub":
            e["xnet"] = bool(r.flags)
            callers = name_callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "free":
            callers = name_callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "stash_clean":
            e["hook"] = r.hook
        elif r.kind.startswith(("meta_", "gated_")):
            e.update(design_event(r))
            if r.kind.startswith("meta_"):
                meta_owner[r.ext] = e["skb"]
        if r.ext:
            blocks[r.ext] = e
            for p in list(pending):
                if owned_by(p, {r.ext: e}):
                    pending.remove(p)
        events.append(e)
    for e in events:
        e.pop("chunk", None)
    return settle_tracepoint_events(events)


def from_tracepoint(r, number) -> dict:
    """A bpf_skb_storage tracepoint record as an event: storage_alloc and
    storage_free (as the kprobes give them, with the map always named),
    storage_clone and storage_scrub (only the tracepoints tell these)."""
    e = {"packet": number.get(r.packet), "token": r.packet or None, "skb": hex(r.skb) if r.skb else None,
         "map": r.ifname, "via": "tracepoint"}
    if r.kind == "tp_create":
        e.update(kind="storage_alloc", where="bpf_skb_storage_get")
    elif r.kind == "tp_clone":
        e.update(kind="storage_clone", parent=hex(r.other), where="skb_clone")
    elif r.kind == "tp_scrub":  # the tracepoint names the call site: no stack to walk
        e.update(kind="storage_scrub", where=Symbols.get().name(r.other), xnet=bool(r.flags & 1),
                 reason=SCRUB_REASONS.get((r.flags >> 1) & 0x7f, "?"), kept=bool(r.flags >> 8 & 1))
    elif r.skb:
        e.update(kind="storage_free", where="bpf_skb_storage_delete")
    else:  # with the extension block's last reference: who let go of it
        callers = name_callers(r.stack)
        e.update(kind="storage_free", chunk=r.ext, where=callers[0] if callers else None, stack=callers[:5])
    return e


def design_event(r) -> dict:
    """What a metadata buffer or gated tracepoint record adds to its event."""
    e = {"via": "tracepoint"}
    callers = name_callers(r.stack) if r.kind in ("gated_copy", "gated_free") else []
    if r.kind == "meta_create":
        e.update(block=hex(r.ext), where="bpf_dynptr_from_skb_ext")
    elif r.kind == "meta_copy":
        e.update({"from": hex(r.other), "to": hex(r.ext), "where": "skb_ext_add"})
    elif r.kind in ("meta_scrub", "gated_scrub"):
        e.update(where=Symbols.get().name(r.other), xnet=bool(r.flags & 1),
                 reason=SCRUB_REASONS.get((r.flags >> 1) & 0x7f, "?"))
        if r.kind == "meta_scrub":
            e.update({"from": hex(r.stack[0]) if r.stack else None, "to": hex(r.ext), "kept": True})
    elif r.kind == "gated_arm":
        e.update(err=r.err[4], value=r.value[4], where="bpf_trace_skb")
    elif r.kind == "gated_copy":
        e.update(parent=hex(r.other), entry=r.value[4] if r.state[4] == "present" else None,
                 where=callers[0] if callers else "skb_copy")
    elif r.kind == "gated_free":
        e.update(reaped=r.value[4] if r.state[4] == "present" else None,
                 where=callers[0] if callers else None, stack=callers[:5])
    return e


def settle_tracepoint_events(events) -> list[dict]:
    """Tracepoint events name their skb, but a packet only once a hook has
    seen it: give them the packet of the skb's other events. A copy to a
    clone (storage, gated stash entry) happens inside skb_clone(), before
    the clone event: put it after."""
    packet_of = {}
    for e in events:
        if e.get("skb") and e.get("packet") is not None:
            packet_of.setdefault(e["skb"], (e["packet"], e.get("token")))
    freed_in = {}
    for e in events:
        if e.get("via") == "tracepoint" and e.get("packet") is None and e.get("skb") in packet_of:
            e["packet"], e["token"] = packet_of[e["skb"]]
        if e["kind"] == "free":
            freed_in[e.get("skb")] = e.get("where")
        elif e["kind"] == "storage_free" and e.get("via") == "tracepoint" and not e.get("where"):
            # the block went with its last skb: say where that skb was freed (the stack is too short to)
            e["where"] = freed_in.get(e.get("skb")) or "__skb_ext_put"
    out, waiting, cloned = [], {}, set()
    clones = {e.get("skb") for e in events if e["kind"] == "clone"}
    for e in events:
        if e["kind"] in ("storage_clone", "gated_copy") and e["skb"] in clones and e["skb"] not in cloned:
            waiting.setdefault(e["skb"], []).append(e)
            continue
        out.append(e)
        if e["kind"] == "clone":
            cloned.add(e.get("skb"))
            out.extend(waiting.pop(e.get("skb"), []))
    for rest in waiting.values():
        out.extend(rest)
    for i, e in enumerate(out):
        e["seq"] = i
    return out


REPORT = struct.Struct("<QQIIQ")  # struct lab_report (bpf/include/lab_user.h)
REPORT_TAGS = {1: "value", 2: "delay_ns", 3: "absent", 4: "refused", 5: "present", 6: "written", 7: "wire"}
HASH_TYPES = (1, 5, 9, 10)  # BPF_MAP_TYPE_HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH


def merge_reports(events, reports, tokens, t0) -> list[dict]:
    """Your programs' lab_report() records as "report" events, merged into
    the observer's events by time (seq renumbered)."""
    number = {tok: i + 1 for i, tok in enumerate(tokens)}
    out = list(events)
    for path, raw in reports:
        skb, t_ns, token, tag, value = REPORT.unpack_from(raw)
        out.append({"seq": -1, "t_us": round((t_ns - t0) / 1000, 1), "kind": "report", "packet": number.get(token),
                    "token": token, "skb": hex(skb), "tag": REPORT_TAGS.get(tag, str(tag)), "value": value,
                    "obj": os.path.basename(path)})
    out.sort(key=lambda e: (e["t_us"], e["seq"] < 0))
    for i, e in enumerate(out):
        e["seq"] = i
    return out


def owned_by(e, blocks) -> bool:
    """Give a storage event the skb whose extension block holds its chunk."""
    below = [b for b in blocks if b <= e["chunk"] < b + 256]
    if not below:
        return False
    owner = blocks[max(below)]
    e.update(packet=owner["packet"], token=owner.get("token"), skb=owner["skb"])
    return True
