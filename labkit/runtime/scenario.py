"""Topologies and scenarios as data.

A ``Scenario`` says which namespaces, veth pairs, tunnels and clone points
to build, what the lab's observer does at which hook, which packets to send
and the path the kernel is expected to take. It is plain data: it
validates, describes itself and round-trips through JSON without a VM.
``labkit.runtime.run`` realises it inside the lab VM.

Its parts (topology, hooks, packets, clone points) are in ``labkit.runtime.parts``.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, fields, replace

from labkit.runtime.parts import (
    ATTACH_POINTS,
    DESIGNS,
    FLAG_NAMES,
    HOOK_POINTS,
    IFNAMSIZ,
    MAP_FLAGS,
    PROTOS,
    SLOTS,
    TUNNEL_KINDS,
    Attach,
    Hook,
    Mirror,
    Neigh,
    Packet,
    Sink,
    Tap,
    Topology,
    Tunnel,
    Veth,
    bad,
)


@dataclass
class Scenario:
    name: str
    description: str
    topology: Topology
    hooks: tuple = ()
    packets: tuple = ()
    mirrors: tuple = ()
    taps: tuple = ()
    attach: tuple = ()
    expect: tuple = ()  # steps for labkit.runtime.events.expect, checked per packet
    params: dict = field(default_factory=dict)
    map_flags: dict = field(default_factory=dict)  # {"storage_a": ("clone", ...)}: see MAP_FLAGS

    def with_flags(self, **slots) -> "Scenario":
        """The same scenario with map flags for storage_a/storage_b, e.g.
        ``with_flags(storage_a=("keep_tunnel",))``; a string is one flag."""
        flags = dict(self.map_flags)
        for slot, names in slots.items():
            names = (names,) if isinstance(names, str) else tuple(names or ())
            if names:
                flags[slot] = names
            else:
                flags.pop(slot, None)
        return replace(self, map_flags=flags).validate()

    def with_design(self, design: str) -> "Scenario":
        """The same scenario with storage_a's writes done by another design
        (``DESIGNS``): "storage" (the RFC's skb storage, as written), "meta"
        (the skb's BPF metadata buffer), "gated" (the stash on the gated skb
        tracepoints) or "stash" (the ungated side stash). The expected path
        is storage_a's, so another design runs without one, and without the
        storage's map flags; ``params["design"]`` says which ran."""
        if design not in DESIGNS:
            bad(f"scenario {self.name}: unknown design {design!r}", f"use one of {', '.join(DESIGNS)}")
        slot = DESIGNS[design]
        if slot == "storage_a":
            return self

        def moved(names):
            return tuple(dict.fromkeys(slot if n == "storage_a" else n for n in names))

        hooks = tuple(replace(h, write=moved(h.write), delete=moved(h.delete)) for h in self.hooks)
        flags = {k: v for k, v in self.map_flags.items() if k != "storage_a"}
        return replace(self, hooks=hooks, expect=(), params={**self.params, "design": design},
                       map_flags=flags).validate()

    def map_flag_bits(self) -> dict:
        """{map name: BPF map_flags} for the observer's storage maps."""
        return {slot: 1 | sum(MAP_FLAGS[n] for n in names) for slot, names in self.map_flags.items()}

    # -- validation ---------------------------------------------------------------

    def validate(self) -> "Scenario":
        topo = self.topology
        if not topo.netns:
            bad(f"scenario {self.name}: no network namespace")
        for ns in topo.netns:
            if not ns or not ns.replace("_", "").isalnum() or len(ns) > 12:
                bad(f"scenario {self.name}: bad namespace name {ns!r}", "use letters and digits, up to 12")
        if len(set(topo.netns)) != len(topo.netns):
            bad(f"scenario {self.name}: a namespace is named twice")

        def known_ns(ns, what):
            if ns not in topo.netns:
                bad(f"scenario {self.name}: {what} names namespace {ns!r}, which the topology does not have",
                     f"namespaces are {', '.join(topo.netns)}")

        def check_dev(name, what):
            if not name.startswith("lk") or len(name) > IFNAMSIZ or not name.replace("-", "").isalnum():
                bad(f"scenario {self.name}: {what}: device name {name!r} must start with 'lk' and fit "
                     f"{IFNAMSIZ} characters")

        def check_addr(addr, what, prefix=True):
            try:
                if prefix:
                    ipaddress.IPv4Interface(addr)
                    if "/" not in addr:
                        raise ValueError("no prefix length")
                else:
                    ipaddress.IPv4Address(addr)
            except ValueError as exc:
                bad(f"scenario {self.name}: {what}: bad IPv4 address {addr!r} ({exc})",
                     "write it like 10.0.0.1/24" if prefix else "write it like 10.0.0.1")

        seen = set()
        for v in topo.veths:
            for ns, dev, addr in ((v.ns_a, v.a, v.addr_a), (v.ns_b, v.b, v.addr_b)):
                known_ns(ns, f"veth {dev}")
                check_dev(dev, "veth")
                if (ns, dev) in seen:
                    bad(f"scenario {self.name}: device {dev} defined twice in {ns}")
                seen.add((ns, dev))
                if addr:
                    check_addr(addr, f"veth {dev}")
        addrs = topo.addresses()
        for t in topo.tunnels:
            if t.kind not in TUNNEL_KINDS:
                bad(f"scenario {self.name}: unknown tunnel kind {t.kind!r}",
                     f"use one of {', '.join(TUNNEL_KINDS)}")
            check_dev(t.name, f"{t.kind} tunnel")
            if t.external and t.kind != "geneve":
                bad(f"scenario {self.name}: an external (collect_md) tunnel is GENEVE only here, not {t.kind}")
            for ns in (t.ns_a, t.ns_b):
                known_ns(ns, f"{t.kind} tunnel")
                if (ns, t.name) in seen:
                    bad(f"scenario {self.name}: device {t.name} defined twice in {ns}")
                seen.add((ns, t.name))
            for addr in (t.addr_a, t.addr_b):
                check_addr(addr, f"{t.kind} tunnel")
            for under, ns in ((t.under_a, t.ns_a), (t.under_b, t.ns_b)):
                check_addr(under, f"{t.kind} underlay", prefix=False)
                if addrs.get(under, (None,))[0] != ns:
                    bad(f"scenario {self.name}: {t.kind} underlay address {under} is not on a veth in {ns}")
        for s in topo.sinks:
            known_ns(s.ns, f"sink {s.name}")
            check_dev(s.name, "sink")
            if (s.ns, s.name) in seen:
                bad(f"scenario {self.name}: device {s.name} defined twice in {s.ns}")
            seen.add((s.ns, s.name))

        devices = topo.devices()
        for n in topo.neighbours:
            check_addr(n.ip, "neighbour", prefix=False)
            for ns, dev in ((n.ns, n.dev), (n.mac_ns, n.mac_dev)):
                known_ns(ns, "neighbour")
                if (ns, dev) not in devices:
                    bad(f"scenario {self.name}: neighbour names device {dev!r}, which {ns} does not have")

        def known_dev(ns, dev, what):
            known_ns(ns, what)
            if (ns, dev) not in devices:
                have = sorted(d for n, d in devices if n == ns)
                bad(f"scenario {self.name}: {what} names device {dev!r}, which namespace {ns} does not have",
                     f"devices in {ns}: {', '.join(have)}")

        for h in self.hooks:
            if h.at not in HOOK_POINTS:
                bad(f"scenario {self.name}: unknown hook {h.at!r}", f"use one of {', '.join(HOOK_POINTS)}")
            known_ns(h.ns, f"hook {h.at}")
            if h.at.startswith("tc/") or h.at == "af_packet":
                if not h.dev:
                    bad(f"scenario {self.name}: hook {h.at} in {h.ns} needs a device")
                known_dev(h.ns, h.dev, f"hook {h.at}")
            for slot in tuple(h.write) + tuple(h.delete):
                if slot not in SLOTS:
                    bad(f"scenario {self.name}: hook {h.label}: unknown map {slot!r}", f"use {', '.join(SLOTS)}")
            if "meta" in h.delete:
                bad(f"scenario {self.name}: hook {h.label}: the metadata buffer has no delete",
                     "write it (a new value) instead")
            if (h.mark or h.clone_to or h.redirect_peer) and not h.at.startswith("tc/"):
                bad(f"scenario {self.name}: hook {h.label}: mark, clone_to and redirect_peer need a tc hook")
            if h.clone_to:
                known_dev(h.ns, h.clone_to, f"hook {h.label} clone_to")
            if h.redirect_peer:
                known_dev(h.ns, h.redirect_peer, f"hook {h.label} redirect_peer")
                if not isinstance(devices[(h.ns, h.redirect_peer)], Veth):
                    bad(f"scenario {self.name}: redirect_peer needs a veth, {h.redirect_peer} is not one")
        labels = [(h.at, h.ns, h.dev) for h in self.hooks]
        if len(set(labels)) != len(labels):
            bad(f"scenario {self.name}: one hook is listed twice")
        for m in self.mirrors:
            known_dev(m.ns, m.dev, "mirror")
            known_dev(m.ns, m.to, "mirror target")
            if not any(h.at == ("tc/ingress" if m.ingress else "tc/egress") and h.ns == m.ns and h.dev == m.dev
                       for h in self.hooks):
                bad(f"scenario {self.name}: mirror on {m.dev} needs a tc hook there to see the packet first")
        for t in self.taps:
            known_dev(t.ns, t.dev, "AF_PACKET tap")
        for a in self.attach:
            if a.at not in ATTACH_POINTS:
                bad(f"scenario {self.name}: your program {a.prog} can attach at {', '.join(ATTACH_POINTS)}, "
                     f"not {a.at!r}")
            if a.at.startswith("tc/") or a.at == "xdp":
                known_dev(a.ns, a.dev or "", f"your program {a.prog}")
            elif a.at != "trace":
                known_ns(a.ns, f"your program {a.prog}")
        filters = [a.ns for a in self.attach if a.at == "socket_filter"]
        if len(set(filters)) != len(filters):
            bad(f"scenario {self.name}: a socket takes one filter; two of yours are set for one namespace")
        for slot, names in self.map_flags.items():
            if slot not in SLOTS[:2]:
                bad(f"scenario {self.name}: map flags for {slot!r}: only skb storage maps take them",
                     f"use {' or '.join(SLOTS[:2])}")
            for n in names:
                if n not in MAP_FLAGS:
                    bad(f"scenario {self.name}: unknown map flag {n!r} for {slot}", f"use {', '.join(MAP_FLAGS)}")
        if not self.packets:
            bad(f"scenario {self.name}: no packets to send")
        for p in self.packets:
            known_ns(p.src, "packet source")
            check_addr(p.dst, "packet destination", prefix=False)
            if p.proto not in PROTOS:
                bad(f"scenario {self.name}: unknown protocol {p.proto!r}", f"use one of {', '.join(PROTOS)}")
            if not 8 <= p.size <= 1400:
                bad(f"scenario {self.name}: packet size {p.size} out of range", "use 8 to 1400 bytes of payload")
            if not 1 <= p.count <= 1000:
                bad(f"scenario {self.name}: packet count {p.count} out of range", "send 1 to 1000 packets")
            if p.via and (p.src, p.via) not in devices:
                bad(f"scenario {self.name}: packet sent via {p.via!r}, which namespace {p.src} does not have")
            if p.src_ip:
                check_addr(p.src_ip, "packet source", prefix=False)
            if p.dst not in addrs:
                bad(f"scenario {self.name}: no device has the destination address {p.dst}",
                     f"addresses: {', '.join(sorted(addrs))}")
        return self

    # -- description ---------------------------------------------------------------

    def describe(self) -> str:
        topo = self.topology
        lines = [f"scenario {self.name}: {self.description}"]
        if self.params:
            lines.append("  parameters: " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        lines.append("  namespaces: " + ", ".join(f"lk-{n}" for n in topo.netns))
        for v in topo.veths:
            lines.append(f"  veth {v.a} ({v.ns_a}{' ' + v.addr_a if v.addr_a else ''}) <-> "
                         f"{v.b} ({v.ns_b}{' ' + v.addr_b if v.addr_b else ''})")
        for t in topo.tunnels:
            lines.append(f"  {t.kind} tunnel {t.name}: {t.addr_a} in {t.ns_a} <-> {t.addr_b} in {t.ns_b}, "
                         f"over {t.under_a} -> {t.under_b}" + (" (external: keys set by BPF)" if t.external else ""))
        for s in topo.sinks:
            lines.append(f"  sink {s.name} in {s.ns}" + (" (holds what it gets)" if s.hold else ""))
        for h in self.hooks:
            acts = []
            if h.write:
                acts.append("write " + "+".join(h.write))
            if h.delete:
                acts.append("delete " + "+".join(h.delete))
            if h.mark:
                acts.append(f"mark={h.mark:#x}")
            if h.clone_to:
                acts.append(f"bpf_clone_redirect to {h.clone_to}")
            if h.redirect_peer:
                acts.append(f"bpf_redirect_peer to {h.redirect_peer}'s peer")
            acts.append("observe")
            lines.append(f"  hook {h.at} on {h.dev or 'the receiving socket'} in {h.ns}: " + ", ".join(acts))
        for m in self.mirrors:
            lines.append(f"  tc mirred mirror of {m.dev} {'ingress' if m.ingress else 'egress'} to {m.to}")
        for t in self.taps:
            lines.append(f"  AF_PACKET tap on {t.dev} in {t.ns}")
        for a in self.attach:
            place = {"trace": "by its section", "xdp": f"as XDP on {a.dev} in {a.ns}", "socket_filter": f"on the receiving sockets in {a.ns}",
                     "cgroup_skb/ingress": f"on the cgroup of {a.ns}'s sockets"}.get(a.at, f"on {a.dev} in {a.ns}")
            lines.append(f"  your program {a.prog} ({a.obj.rsplit('/', 1)[-1]}) at {a.at} {place}")
        for slot, names in self.map_flags.items():
            lines.append(f"  map {slot}: BPF_F_NO_PREALLOC | " + " | ".join(FLAG_NAMES[n] for n in names))
        for p in self.packets:
            via = f" out of {p.via}" if p.via else ""
            lines.append(f"  send {p.count} x {p.proto} ({p.size} bytes) from {p.src}{via} to {p.dst}")
        return "\n".join(lines)

    # -- JSON ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Scenario":
        def build(kind, items):
            names = {f.name for f in fields(kind)}
            out = []
            for it in items or ():
                unknown = set(it) - names
                if unknown:
                    bad(f"{kind.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
                out.append(kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in it.items()}))
            return tuple(out)

        t = d.get("topology") or {}
        topo = Topology(netns=tuple(t.get("netns", ())), veths=build(Veth, t.get("veths")),
                        tunnels=build(Tunnel, t.get("tunnels")), sinks=build(Sink, t.get("sinks")),
                        neighbours=build(Neigh, t.get("neighbours")))
        return cls(name=d["name"], description=d.get("description", ""), topology=topo,
                   hooks=build(Hook, d.get("hooks")), packets=build(Packet, d.get("packets")),
                   mirrors=build(Mirror, d.get("mirrors")), taps=build(Tap, d.get("taps")),
                   attach=build(Attach, d.get("attach")),
                   expect=tuple(d.get("expect", ())), params=dict(d.get("params") or {}),
                   map_flags={k: tuple(v) for k, v in (d.get("map_flags") or {}).items()})
