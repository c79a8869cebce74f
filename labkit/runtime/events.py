"""``EventLog``: what the kernel did to every skb of a scenario run.

Events are plain dicts, in the order the kernel produced them:

``seq``      position in the log
``t_us``     microseconds since the first event
``kind``     ``hook`` (seen at a hook), ``clone``, ``scrub``, ``free`` (the
             sk_buff is released), ``storage_alloc`` (a map's element
             allocated on the skb; ``map`` names the map; on the lab
             kernel also ``storage_clone`` and ``storage_scrub``, from its
             bpf_skb_storage tracepoints), ``storage_free``
             (the storage goes with its extension block), ``stash_clean``
             (the side stash entry is removed at a free tracepoint);
             the metadata buffer's ``meta_create``, ``meta_copy`` (its
             block copied on write, or for a clone), ``meta_scrub`` (kept
             across a scrub) and ``meta_free`` (``block``: its extension
             block); the gated stash's ``gated_arm`` (a hook armed the
             skb), ``gated_copy`` (``entry`` copied to a clone or copy),
             ``gated_scrub`` and ``gated_free`` (``reaped``: the entry
             deleted), each from the lab kernel's tracepoints
``packet``   which packet: 1, 2, ... in send order (clones share it)
``token``    the random token that packet carried
``skb``      the sk_buff's kernel address (hex), ``parent`` for a clone
``hook``     e.g. ``tc/ingress``; ``ns`` (lab namespace), ``ifname``
``maps``     for hook events: {slot: {"state": ..., "value": ...}} with
             state one of created, present, absent, refused; slots are
             storage_a, storage_b (skb storage), stash (side stash), meta
             (the metadata buffer) and gated (the gated stash)
``where``    scrub and clone: the kernel function that called
             skb_scrub_packet()/skb_clone(); ``stack`` its callers
``xnet``     scrub: whether the skb crossed network namespaces
``mark``     skb->mark

A log is saved as JSON lines: a header line (``schema``, kernel release,
patch series id, scenario and its parameters, labkit version, when
recorded), then one event per line.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

from labkit.errors import LabError
from labkit.runtime.parts import DESIGNS, SLOTS

SCHEMA = 1


class LogFormatError(LabError):
    """A recording this labkit cannot read."""


class ExpectationError(AssertionError):
    """The kernel did not take the expected path; says where it went instead."""


class EventLog:
    def __init__(self, events=(), header=None):
        self.events = [dict(e) for e in events]
        self.header = dict(header or {})

    def __len__(self):
        return len(self.events)

    def __iter__(self):
        return iter(self.events)

    def __getitem__(self, i):
        return self.events[i]

    # -- grouping ------------------------------------------------------------------

    def packets(self) -> list[int]:
        return sorted({e["packet"] for e in self.events if e.get("packet")})

    def by_packet(self) -> dict:
        out = defaultdict(list)
        for e in self.events:
            out[e.get("packet")].append(e)
        return dict(out)

    def by_skb(self) -> dict:
        out = defaultdict(list)
        for e in self.events:
            if e.get("skb"):
                out[e["skb"]].append(e)
        return dict(out)

    def design_slot(self) -> str:
        """The slot the run's design kept its data in (``Scenario.with_design``; storage_a: the RFC's)."""
        return DESIGNS.get((self.header.get("params") or {}).get("design"), "storage_a")

    def of_packet(self, packet: int) -> "EventLog":
        return EventLog([e for e in self.events if e.get("packet") == packet], self.header)

    def skbs(self, packet=None) -> list[str]:
        """skb addresses in order of first appearance."""
        seen = []
        for e in self.events:
            if (packet is None or e.get("packet") == packet) and e.get("skb") and e["skb"] not in seen:
                seen.append(e["skb"])
        return seen

    # -- files ---------------------------------------------------------------------

    def dumps(self) -> str:
        head = {"schema": SCHEMA, **self.header}
        lines = [json.dumps({"header": head}, sort_keys=True)]
        lines += [json.dumps(e, sort_keys=True) for e in self.events]
        return "\n".join(lines) + "\n"

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.dumps())
        tmp.replace(path)
        return path

    @classmethod
    def loads(cls, text: str, source="the log") -> "EventLog":
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise LogFormatError(f"{source} is empty", fix="record one with: labkit record SCENARIO -o FILE")
        try:
            first = json.loads(lines[0])
        except json.JSONDecodeError as exc:
            raise LogFormatError(f"{source} is not a labkit event log (line 1: {exc})") from None
        head = first.get("header") if isinstance(first, dict) else None
        if not isinstance(head, dict) or "schema" not in head:
            raise LogFormatError(f"{source} has no labkit header line")
        if head["schema"] != SCHEMA:
            raise LogFormatError(
                f"{source} was recorded with event schema {head['schema']}; this labkit reads schema {SCHEMA}",
                fix="record it again with: labkit record " + str(head.get("scenario", "SCENARIO")))
        events = []
        for n, ln in enumerate(lines[1:], start=2):
            try:
                events.append(json.loads(ln))
            except json.JSONDecodeError as exc:
                raise LogFormatError(f"{source} line {n} is not JSON: {exc}") from None
        head = dict(head)
        head.pop("schema")
        return cls(events, head)

    @classmethod
    def load(cls, path) -> "EventLog":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise LogFormatError(f"no event log at {path}",
                                 fix="record one with: labkit record SCENARIO -o FILE") from None
        return cls.loads(text, source=str(path))

    # -- reading -------------------------------------------------------------------

    def signature(self, packet=None) -> list:
        """What the kernel did, without addresses and times: per event its
        kind, place and storage states, skbs numbered in order of appearance.
        Frees are left out (when a freed skb's memory is reused is the
        allocator's business); two runs of a scenario agree on the rest."""
        names, out = {}, []
        # Slots no hook of this log wrote or found anything in are left out,
        # so logs recorded before a slot existed compare with new ones.
        slots = [s for s in SLOTS if any(((e.get("maps") or {}).get(s) or {}).get("state") not in (None, "absent")
                                         for e in self.events)]
        for e in self.events:
            if packet is not None and e.get("packet") != packet:
                continue
            if e["kind"] not in ("hook", "scrub", "clone"):
                continue
            for k in ("skb", "parent"):
                if e.get(k) and e[k] not in names:
                    names[e[k]] = len(names) + 1
            states = tuple(((e.get("maps") or {}).get(s) or {}).get("state") for s in slots)
            out.append((e["kind"], e.get("hook"), e.get("ifname"), e.get("ns"), names.get(e.get("skb")),
                        names.get(e.get("parent")), states, e.get("where"), e.get("xnet"), e.get("mark")))
        return out

    def timeline(self, packet=None) -> str:
        """A text timeline for a terminal."""
        names = {}
        for s in self.skbs():
            names[s] = f"skb{len(names) + 1}"
        out = []
        h = self.header
        if h:
            out.append(f"# {h.get('scenario', '?')} {h.get('params', {})} on {h.get('kernel', '?')}"
                       f" recorded {h.get('recorded', '?')}")
        for e in self.events:
            if packet is not None and e.get("packet") != packet:
                continue
            out.append(describe(e, names))
        return "\n".join(out)


def _slot_text(maps):
    parts = []
    for slot in SLOTS:
        m = (maps or {}).get(slot)
        if not m:
            continue
        st = m["state"]
        if st in ("present", "created"):
            parts.append(f"{slot}={st}({m['value']:#x})" if isinstance(m.get("value"), int) else f"{slot}={st}")
        else:
            parts.append(f"{slot}={st}")
    return " ".join(parts)


def describe(e: dict, names=None) -> str:
    names = names or {}
    skb = names.get(e.get("skb"), e.get("skb") or "?")
    where = f"{e.get('ifname') or '-'}@{e.get('ns') or '-'}"
    head = f"{e.get('seq', 0):4d} {e.get('t_us', 0):9.1f}us p{e.get('packet') or '-'} {skb:<6}"
    kind = e.get("kind")
    if kind == "hook":
        extra = f" mark={e['mark']:#x}" if e.get("mark") else ""
        if e.get("clone_ret") is not None:
            extra += f" bpf_clone_redirect={e['clone_ret']}"
        return f"{head} {e.get('hook'):<20} {where:<14} {_slot_text(e.get('maps'))}{extra}"
    if kind == "clone":
        parent = names.get(e.get("parent"), e.get("parent"))
        return f"{head} {'clone of ' + str(parent):<20} {where:<14} by {e.get('where')}"
    if kind == "scrub":
        return (f"{head} {'scrub':<20} {where:<14} skb_scrub_packet(xnet={int(bool(e.get('xnet')))})"
                f" from {e.get('where')}")
    if kind == "free":
        return f"{head} {'free':<20} {where:<14} in {e.get('where')}"
    if kind == "storage_free" and e.get("where") == "bpf_skb_storage_delete":
        return f"{head} {'storage deleted':<20} {'':<14} {e.get('map')} on {skb}, by bpf_skb_storage_delete()"
    if kind == "storage_free":
        what = f"{e['map']} " if e.get("map") else ""
        return f"{head} {'storage freed':<20} {'':<14} {what}with {skb}'s extension block, in {e.get('where')}"
    if kind == "storage_clone":
        parent = names.get(e.get("parent"), e.get("parent"))
        return f"{head} {'storage copied':<20} {'':<14} {e.get('map')} from {parent} to the clone {skb}"
    if kind == "storage_scrub":
        return (f"{head} {'storage ' + ('kept' if e.get('kept') else 'scrubbed'):<20} {'':<14} {e.get('map')} on "
                f"{skb}: {e.get('reason')} scrub (xnet={int(bool(e.get('xnet')))}) from {e.get('where')}")
    if kind == "storage_alloc":
        return f"{head} {'storage allocated':<20} {'':<14} {e.get('map')} on {skb}, in {e.get('where')}"
    if kind == "report":
        return f"{head} {'report':<20} {'':<14} {e.get('tag')}={e.get('value')} from {e.get('obj')}"
    if kind == "stash_clean":
        return f"{head} {'stash entry removed':<20} {where:<14} at {e.get('hook')}"
    return describe_design(e, head, skb, names)


def describe_design(e, head, skb, names) -> str:
    """The metadata buffer's and the gated stash's events."""
    kind, gap = e.get("kind"), f"{'':<14}"
    parent = names.get(e.get("parent"), e.get("parent"))
    said = {
        "meta_create": ("buffer created", f"on {skb}, by bpf_dynptr_from_skb_ext(F_CREATE)"),
        "meta_copy": ("buffer copied", f"{skb} got its own block ({e.get('from')} -> {e.get('to')})"),
        "meta_scrub": ("buffer kept", f"on {skb}: {e.get('reason')} scrub (xnet={int(bool(e.get('xnet')))}) "
                                      f"from {e.get('where')}"),
        "meta_free": ("buffer freed", f"with {skb}'s block {e.get('block')}, in {e.get('where')}"),
        "gated_arm": ("armed", f"{skb}, by bpf_trace_skb() = {e.get('err')}"),
        "gated_copy": ("gated skb_copy", f"{parent} -> {skb}" + (f", entry {e['entry']:#x} copied"
                                                                  if e.get("entry") is not None else "")),
        "gated_scrub": ("gated skb_scrub", f"{skb}: {e.get('reason')} scrub from {e.get('where')}"),
        "gated_free": ("gated skb_free", f"{skb}" + (f", entry {e['reaped']:#x} reaped" if e.get("reaped") is not None
                                                     else "") + (f", in {e.get('where')}" if e.get("where") else "")),
    }.get(kind)
    if said is None:
        return f"{head} {kind}"
    return f"{head} {said[0]:<20} {gap} {said[1]}"


# ---- expectations ---------------------------------------------------------------


def step(kind="hook", **fields) -> dict:
    """One expected event: a partial match. Slot names (storage_a, ...) match
    the slot's state; ``where`` matches any function of the stack by prefix;
    ``same_skb=True`` requires the skb of the previous matched step,
    ``new_skb=True`` another one."""
    return {"kind": kind, **fields}


def at(hook, ifname=None, **fields) -> dict:
    d = {"kind": "hook", "hook": hook}
    if ifname:
        d["ifname"] = ifname
    d.update(fields)
    return d


def _matches(e, want, prev):
    for k, v in want.items():
        if k in SLOTS:
            if (e.get("maps") or {}).get(k, {}).get("state") != v:
                return False
        elif k == "where":
            frames = [e.get("where") or ""] + list(e.get("stack") or [])
            if not any(f.startswith(v) for f in frames if f):
                return False
        elif k == "same_skb":
            if prev is not None and (e.get("skb") == prev.get("skb")) != bool(v):
                return False
        elif k == "new_skb":
            if prev is not None and (e.get("skb") != prev.get("skb")) != bool(v):
                return False
        elif k == "value":
            if not any((m or {}).get("value") == v for m in (e.get("maps") or {}).values()):
                return False
        elif e.get(k) != v:
            return False
    return True


def _show_step(want):
    return ", ".join(f"{k}={v}" for k, v in want.items())


def expect(log, steps, packet=None):
    """Assert the steps occur in order (other events may come between).

    Returns the matched events. On the first step not found, raises
    ExpectationError naming it and showing what the log had instead.
    """
    events = log.events if isinstance(log, EventLog) else list(log)
    if packet is not None:
        events = [e for e in events if e.get("packet") == packet]
    matched, i, prev = [], 0, None
    for n, want in enumerate(steps, start=1):
        for j in range(i, len(events)):
            if _matches(events[j], want, prev):
                matched.append(events[j])
                prev, i = events[j], j + 1
                break
        else:
            rest = events[i:]
            same = [e for e in rest if e.get("kind") == want.get("kind")
                    and all(e.get(k) == want[k] for k in ("hook", "ifname") if k in want)]
            seen = same or rest
            lines = [describe(e) for e in seen[:8]] or ["(nothing)"]
            after = f" after event {prev['seq']}" if prev else ""
            who = f" for packet {packet}" if packet is not None else ""
            raise ExpectationError(
                f"step {n} of {len(steps)} not seen{who}{after}: {_show_step(want)}\n"
                f"  {'closest' if same else 'what came instead'}:\n    " + "\n    ".join(lines))
    return matched


def header(scenario, **extra) -> dict:
    from labkit import __version__

    return {"scenario": scenario.name, "params": scenario.params, "labkit": __version__,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
