"""Realise a ``Scenario`` inside the lab VM and record what the kernel does.

Runs as root in the guest (the lab tests call it directly; the host's
``Lab.run_scenario`` reaches it through the guest worker). Every object a
run creates is owned by one ``ExitStack`` and removed on the way out, on
success, error or interrupt: namespaces (and with them their devices),
cgroups, tc filters, sockets and the BPF object.

``run()`` and ``Run`` are here; what a run uses reads on its own in its module of
``labkit.runtime``: ``symbols`` (the kernel's symbols and what its BTF offers),
``decode`` (records as the log's events; your programs' reports merged in),
``observer`` (the observer object, kept loaded by a long-lived worker) and
``topology`` (realising a topology with pyroute2; ``RunError``; entering a namespace).
"""

from __future__ import annotations

import os
import select
import socket
import time
from contextlib import ExitStack, contextmanager

from labkit.runtime import traffic
from labkit.runtime.decode import HASH_TYPES, REPORT, merge_reports, to_events
from labkit.runtime.events import EventLog, header
from labkit.runtime.observer import MAP_WALK_LIMIT, observer, series_id
from labkit.runtime.parts import SLOTS
from labkit.runtime.records import ACTION, HOOK_IDS, POINT, RECORD_SIZE, Record
from labkit.runtime.scenario import Scenario
from labkit.runtime.topology import RunError, build_topology, in_netns, netlink, ns_name

SO_ATTACH_BPF = 50
ETH_P_ALL = 0x0003
QUIET_MS = 120       # the ring is drained until it stays empty this long
SETTLE_LIMIT_S = 3.0


# ---- one run ------------------------------------------------------------------------------


class Run:
    """One scenario run: realise, attach, send, collect; then tear down."""

    def __init__(self, scenario: Scenario, packets=None, *, obj_path=None):
        self.scenario = scenario.validate()
        self.packets = packets  # [(src ns, bytes)] built on the host, or None to build here
        self.obj_path = obj_path
        self.records = []
        self.timings = {}
        self._t = time.monotonic()

    def _lap(self, what):
        now = time.monotonic()
        self.timings[what] = round(now - self._t, 3)
        self._t = now

    def _drain_until_quiet(self, ring, expect_more=True):
        deadline = time.monotonic() + SETTLE_LIMIT_S
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            got = ring.drain(20)
            if got:
                quiet_since = time.monotonic()
            elif (time.monotonic() - quiet_since) * 1000 >= QUIET_MS:
                break

    def execute(self) -> EventLog:
        from labkit.bpf.build import obj_path
        from labkit.guest.cgroup import Cgroup
        sc = self.scenario
        packets = self.packets if self.packets is not None else build_packets(sc)
        tokens = [traffic.token_of(p) for _, p in packets]
        with ExitStack() as st:
            obj, ring = observer(st, self.obj_path or obj_path("observe"), sc.map_flag_bits())
            self._lap("load")
            built = build_topology(st, sc.topology)
            self._lap("topology")
            actions = obj.map("actions")
            cgroup = None
            for h in sc.hooks:
                if h.at.startswith("tc/"):
                    ifx = built.ifindex(h.ns, h.dev)
                    prog = "lab_tc_ingress" if h.at == "tc/ingress" else "lab_tc_egress"
                    with in_netns(ns_name(h.ns)):
                        st.callback(obj.program(prog).attach_tc(ifx, ingress=h.at == "tc/ingress",
                                                                priority=1).close)
                elif h.at == "cgroup_skb/ingress" and cgroup is None:
                    cgroup = st.enter_context(Cgroup())
                    st.callback(obj.program("lab_cgroup_ingress").attach_cgroup(cgroup.path).close)
                key = self._point(built, h)
                if key is not None:
                    actions.update(key, self._action(built, h))
            for m in sc.mirrors:
                self._mirror(st, obj, built, m)
            own = self._load_own(st, sc.attach)
            for a in sc.attach:
                cgroup = self._attach_own(st, built, a, own[a.obj][0], cgroup)
            socks = self._receivers(st, obj, built, cgroup, own)
            taps = []
            for t in sc.taps:
                taps.append(self._tap(st, obj, t))
            self._lap("hooks")
            senders = {}
            for (src, data), p in zip(packets, self._packet_specs()):
                via = p.via
                if (src, via) not in senders:
                    s = traffic.raw_sender(ns_name(src)) if not via else self._frame_sender(st, built, src, via)
                    st.callback(s.close)
                    senders[(src, via)] = s
                if via:
                    ns, dev = sc.topology.addresses()[p.dst]
                    frame = traffic.ether(built.mac(ns, dev), built.mac(src, via), data)
                    senders[(src, via)].send(frame)
                else:
                    traffic.send(senders[(src, via)], data)
                ring.drain(0)
            self._lap("send")
            self._drain_until_quiet(ring)
            self._lap("settle")
            # Let go of what keeps clones alive, so their ends are in the log too.
            for s in socks + taps:
                _consume(s)
            for s in taps:
                s.close()
            for sink in sc.topology.sinks:
                if sink.hold:
                    try:
                        built.ipr[sink.ns].tc("del", "plug", index=built.ifindex(sink.ns, sink.name))
                    except Exception:  # noqa: BLE001 - gone with its device is fine
                        pass
            self._drain_until_quiet(ring)
            for _, own_ring in own.values():
                if own_ring is not None:
                    own_ring.drain(0)
            self._lap("release")
            if ring.overflow:
                raise RunError(f"the run produced more than {ring.limit} events (a packet loop?); it was torn down",
                               fix="check the scenario's redirects and mirrors (labkit scenario describe)")
            self.records = [Record.decode(r) for r in ring.records if len(r) >= RECORD_SIZE]
            names = {ino: ns for ns, ino in built.inode.items()}
            stash_left = _count(obj.map("stash"))
            gated_left = _count(obj.map("gated"))
            reports, own_maps = [], {}
            for path, (o, own_ring) in own.items():
                if own_ring is not None:
                    reports += [(path, r) for r in own_ring.records if len(r) >= REPORT.size]
                own_maps.update({name: _count(m) for name, m in o.maps.items()
                                 if m.type in HASH_TYPES})
        self._lap("teardown")
        t0 = self.records[0].t_ns if self.records else 0
        events = to_events(self.records, tokens, names)
        if reports:
            events = merge_reports(events, reports, tokens, t0)
        head = header(sc, kernel=os.uname().release, series=series_id(), tokens=tokens, stash_left=stash_left,
                      gated_left=gated_left,
                      timings=self.timings)
        if sc.map_flags:
            head["map_flags"] = {slot: list(names) for slot, names in sc.map_flags.items()}
        head["t0_ns"] = t0  # bpf_ktime_get_ns() of event 0: reported and traced times compare with t_us
        if own:
            head["own_maps"] = own_maps
        return EventLog(events, head)

    # -- pieces ---------------------------------------------------------------------------

    def _packet_specs(self):
        return [p for p in self.scenario.packets for _ in range(p.count)]

    @staticmethod
    def _frame_sender(st, built, ns, dev):
        from pyroute2 import netns as prnetns

        s = prnetns.create_socket(ns_name(ns), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL),
                                  flags=0)
        with in_netns(ns_name(ns)):
            s.bind((dev, 0))
        return s

    @staticmethod
    def _point(built, h):
        ifx = built.ifindex(h.ns, h.dev) if h.at.startswith("tc/") else 0
        return POINT.pack(built.inode[h.ns], ifx, HOOK_IDS[h.at])

    @staticmethod
    def _action(built, h):
        write = sum(1 << SLOTS.index(s) for s in h.write)
        delete = sum(1 << SLOTS.index(s) for s in h.delete)
        clone = built.ifindex(h.ns, h.clone_to) if h.clone_to else 0
        peer = built.ifindex(h.ns, h.redirect_peer) if h.redirect_peer else 0
        return ACTION.pack(write, delete, h.mark, clone, peer, *(0,) * len(SLOTS))

    @staticmethod
    def _load_own(st, attach) -> dict:
        """Your objects, each loaded once with every program the scenario
        attaches from it (so they share their maps): {path: (obj, reports)}.
        A verifier reject raises VerifierError."""
        from labkit.bpf.attach import RingBuffer
        from labkit.bpf.libbpf import BpfObject

        progs = {}
        for a in attach:
            progs.setdefault(a.obj, []).append(a.prog)
        out = {}
        for path, names in progs.items():
            o = st.enter_context(BpfObject(path, programs=sorted(set(names))))
            ring = st.enter_context(RingBuffer(o.map("reports"), limit=100_000)) if "reports" in o.maps else None
            out[path] = (o, ring)
        return out

    @staticmethod
    def _attach_own(st, built, a, own, cgroup):
        """Attach one of your programs: tc after the observer, cgroup_skb on
        the run's cgroup, trace by its section, XDP on a device; socket
        filters go on the receiving sockets (see _receivers)."""
        from labkit.guest.cgroup import Cgroup

        prog = own.program(a.prog)
        if a.at.startswith("tc/"):
            ifx = built.ifindex(a.ns, a.dev)
            with in_netns(ns_name(a.ns)):
                st.callback(prog.attach_tc(ifx, ingress=a.at == "tc/ingress", priority=2).close)
        elif a.at == "cgroup_skb/ingress":
            if cgroup is None:
                cgroup = st.enter_context(Cgroup())
            st.callback(prog.attach_cgroup(cgroup.path).close)
        elif a.at == "trace":
            st.callback(prog.attach().close)
        elif a.at == "xdp":
            with in_netns(ns_name(a.ns)):
                st.callback(prog.attach_xdp(built.ifindex(a.ns, a.dev)).close)
        return cgroup

    @staticmethod
    def _mirror(st, obj, built, m):
        ipr = built.ipr[m.ns]
        ifx = built.ifindex(m.ns, m.dev)
        parent = 0xFFFFFFF2 if m.ingress else 0xFFFFFFF3  # clsact ingress / egress
        netlink(f"mirred mirror on {m.dev}", ipr.tc, "add-filter", "bpf", index=ifx, handle=2, prio=2,
                 parent=parent, fd=obj.program("lab_match").fd, name="lab_match", classid=1,
                 action={"kind": "mirred", "direction": "egress", "action": "mirror",
                         "ifindex": built.ifindex(m.ns, m.to)})

    def _receivers(self, st, obj, built, cgroup, own=None):
        """A socket on each destination (so the packet is delivered, and the
        cgroup_skb and socket filter hooks have one to run on)."""
        from pyroute2 import netns as prnetns

        sc = self.scenario
        addrs = sc.topology.addresses()
        filters = {h.ns for h in sc.hooks if h.at == "socket_filter"}
        socks, done = [], set()
        for p in sc.packets:
            ns, _ = addrs[p.dst]
            key = (p.dst, p.proto, p.port)
            if p.proto == "icmp" or key in done:
                continue
            done.add(key)
            kind = socket.SOCK_DGRAM if p.proto == "udp" else socket.SOCK_STREAM
            with (cgroup.member() if cgroup else _nothing()):
                s = prnetns.create_socket(ns_name(ns), socket.AF_INET, kind, flags=0)
            st.callback(s.close)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((p.dst, p.port))
            if p.proto == "tcp":
                s.listen(64)
            mine = [a for a in sc.attach if a.at == "socket_filter" and a.ns == ns]
            if mine:  # a socket has one filter: yours replaces the observer's
                fd = own[mine[0].obj][0].program(mine[0].prog).fd
                s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, fd)
            elif ns in filters:
                s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, obj.program("lab_sock_filter").fd)
            s.setblocking(False)
            socks.append(s)
        return socks

    @staticmethod
    def _tap(st, obj, t):
        from pyroute2 import netns as prnetns

        s = prnetns.create_socket(ns_name(t.ns), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL),
                                  flags=0)
        st.callback(s.close)
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, obj.program("lab_tap_filter").fd)
        with in_netns(ns_name(t.ns)):
            s.bind((t.dev, 0))
        s.setblocking(False)
        return s


@contextmanager
def _nothing():
    yield


def _consume(s):
    """Read (or accept) what a socket holds, without blocking."""
    try:
        while select.select([s], [], [], 0)[0]:
            if s.type == socket.SOCK_STREAM:
                c, _ = s.accept()
                c.close()
            else:
                s.recv(65536)
    except OSError:
        pass


def _count(m) -> int:
    """Entries in a hash map (at most MAP_WALK_LIMIT)."""
    n, key = 0, None
    while n < MAP_WALK_LIMIT:
        try:
            key = m.get_next_key(key, key_size=m.key_size)
        except OSError:
            break
        n += 1
    return n


def build_packets(scenario: Scenario) -> list:
    """[(source ns, bytes)] for every packet of the scenario, with fresh tokens."""
    out = []
    for p in scenario.packets:
        src = p.src_ip or source_address(scenario, p)
        for _ in range(p.count):
            out.append((p.src, traffic.build(p.proto, src, p.dst, traffic.new_token(), size=p.size, port=p.port)))
    return out


def source_address(scenario: Scenario, p) -> str:
    """The address in p.src on the destination's subnet (else any address there)."""
    import ipaddress

    mine = []
    for v in scenario.topology.veths:
        for ns, cidr in ((v.ns_a, v.addr_a), (v.ns_b, v.addr_b)):
            if ns == p.src and cidr:
                mine.append(cidr)
    for t in scenario.topology.tunnels:
        mine += [c for ns, c in ((t.ns_a, t.addr_a), (t.ns_b, t.addr_b)) if ns == p.src]
    for cidr in mine:
        if ipaddress.IPv4Address(p.dst) in ipaddress.IPv4Interface(cidr).network:
            return cidr.split("/")[0]
    if mine:
        return mine[0].split("/")[0]
    return "127.0.0.1"


def run(scenario: Scenario, packets=None) -> EventLog:
    """Run scenario once in this (guest) kernel and return its EventLog.

    An interrupt (KeyboardInterrupt) during the run tears the topology down
    before it goes on.
    """
    return Run(scenario, packets).execute()
