"""Realise a ``Scenario`` inside the lab VM and record what the kernel does.

Runs as root in the guest (the lab tests call it directly; the host's
``Lab.run_scenario`` reaches it through the guest worker). Every object a
run creates is owned by one ``ExitStack`` and removed on the way out, on
success, error or interrupt: namespaces (and with them their devices),
cgroups, tc filters, sockets and the BPF object.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import select
import socket
import struct
import time
from contextlib import ExitStack, contextmanager

from labkit import traffic
from labkit.errors import LabError
from labkit.events import EventLog, header
from labkit.records import HOOK_IDS, POINT, ACTION, RECORD_SIZE, SCRUB_REASONS, Record
from labkit.scenario import SLOTS, Scenario, Sink, Topology, Tunnel, Veth

PREFIX = "lk-"
SO_ATTACH_BPF = 50
ETH_P_ALL = 0x0003
LIFECYCLE = ("lab_on_clone_entry", "lab_on_clone", "lab_on_scrub", "lab_on_release", "lab_on_kfree_skbmem",
             "lab_stash_kfree", "lab_stash_consume")
STORAGE_KPROBES = ("lab_on_storage_free", "lab_on_storage_alloc")  # kernels without the tracepoints
STORAGE_TRACEPOINTS = ("lab_tp_create", "lab_tp_clone", "lab_tp_scrub", "lab_tp_free")
HOOK_PROGRAMS = ("lab_tc_ingress", "lab_tc_egress", "lab_cgroup_ingress", "lab_sock_filter", "lab_tap_filter",
                 "lab_match")
QUIET_MS = 120       # the ring is drained until it stays empty this long
SETTLE_LIMIT_S = 3.0
MAP_WALK_LIMIT = 20000  # the observer's hash maps hold far fewer


class RunError(LabError):
    """A scenario could not be realised or run in the VM."""


def ns_name(short: str) -> str:
    return PREFIX + short


# ---- kernel symbols -------------------------------------------------------------------


class Symbols:
    """/proc/kallsyms, for naming the callers of skb_scrub_packet and skb_clone."""

    _cache = None

    def __init__(self):
        addrs, names = [], []
        with open("/proc/kallsyms") as fh:
            for line in fh:
                a, t, name = line.split()[:3]
                if t in "tTwW":
                    addrs.append(int(a, 16))
                    names.append(name)
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self.addrs = [addrs[i] for i in order]
        self.names = [names[i] for i in order]
        end = [a for a, n in zip(addrs, names) if n == "_etext"]
        self.etext = end[0] if end else None

    @classmethod
    def get(cls):
        if cls._cache is None:
            cls._cache = cls()
        return cls._cache

    def name(self, addr: int) -> str:
        if self.etext and addr >= self.etext and addr < self.etext + (1 << 30):
            return "bpf_jit"  # past the kernel's text: a BPF program or trampoline
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 and self.addrs[i] else hex(addr)


SKIP_FRAMES = ("skb_scrub_packet", "skb_clone", "kfree_skbmem", "skb_release_head_state", "skb_release_all",
               "__skb_ext_put", "skb_ext_put", "bpf_skb_storage_free", "bpf_selem_alloc", "bpf_local_storage_update",
               "bpf_jit", "bpf_trampoline", "bpf_prog", "__bpf_prog", "kprobe", "ftrace", "arch_ftrace", "fentry",
               "bpf_trace_run", "bpf_skb_storage_scrub", "trace_skb_storage")


def _callers(stack):
    syms = Symbols.get()
    names = [syms.name(a) for a in stack]
    out = [n for n in names if not n.startswith(SKIP_FRAMES)]
    return out


def kernel_has(*names: str) -> bool:
    """Whether the running kernel's BTF names all of these (functions,
    tracepoints as btf_trace_<name>, types)."""
    global _btf_text
    if _btf_text is None:
        try:
            with open("/sys/kernel/btf/vmlinux", "rb") as fh:
                _btf_text = fh.read()
        except OSError:
            _btf_text = b""
    return all(b"\0" + n.encode() + b"\0" in _btf_text for n in names)


_btf_text = None


def storage_tracepoints() -> bool:
    """The bpf_skb_storage lifecycle tracepoints (kernel patch 0007) are there."""
    return kernel_has("btf_trace_skb_storage_create", "btf_trace_skb_storage_scrub")


def lifecycle_programs() -> tuple:
    """The observer's lifecycle programs for the running kernel."""
    progs = LIFECYCLE + (STORAGE_TRACEPOINTS if storage_tracepoints() else STORAGE_KPROBES)
    if kernel_has("skb_scrub_packet_reason"):
        progs += ("lab_on_scrub_reason",)
    return progs


# ---- records -> events --------------------------------------------------------------------


def to_events(records: list[Record], tokens: list[int], netns_names: dict) -> list[dict]:
    """Turn decoded lab_records into the log's events (see labkit.events)."""
    number = {tok: i + 1 for i, tok in enumerate(tokens)}
    t0 = records[0].t_ns if records else 0
    events = []
    blocks = {}  # skb->extensions -> the last event that had it
    pending = []  # storage_alloc events waiting for the hook event that shows their block
    for r in records:
        e = {"seq": len(events), "t_us": round((r.t_ns - t0) / 1000, 1), "kind": r.kind}
        if r.kind.startswith("tp_"):
            e.update(_from_tracepoint(r, number))
            if e["kind"] == "storage_free" and e["skb"] is None:
                _own(e, blocks)
            events.append(e)
            continue
        if r.kind in ("storage_free", "storage_alloc"):
            # r.ext is the storage's chunk inside an extension block some
            # skb points at: the nearest block below it. An allocation comes
            # before the hook event that shows the block, a free after.
            callers = _callers(r.stack)
            e.update({"packet": None, "token": None, "skb": None, "where": callers[0] if callers else None,
                      "stack": callers[:5], "chunk": r.ext})
            if r.kind == "storage_alloc":
                e["map"] = r.ifname
                pending.append(e)
            else:
                _own(e, blocks)
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
            callers = _callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "scrub":
            e["xnet"] = bool(r.flags)
            callers = _callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "free":
            callers = _callers(r.stack)
            e["where"] = callers[0] if callers else None
            e["stack"] = callers[:5]
        elif r.kind == "stash_clean":
            e["hook"] = r.hook
        if r.ext:
            blocks[r.ext] = e
            for p in list(pending):
                if _own(p, {r.ext: e}):
                    pending.remove(p)
        events.append(e)
    for e in events:
        e.pop("chunk", None)
    return _settle_tracepoint_events(events)


def _from_tracepoint(r, number) -> dict:
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
        callers = _callers(r.stack)
        e.update(kind="storage_free", chunk=r.ext, where=callers[0] if callers else None, stack=callers[:5])
    return e


def _settle_tracepoint_events(events) -> list[dict]:
    """Tracepoint events name their skb, but a packet only once a hook has
    seen it: give them the packet of the skb's other events. A copy to a
    clone happens inside skb_clone(), before the clone event: put it after."""
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
    for e in events:
        if e["kind"] == "storage_clone" and e["skb"] not in cloned:
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


def _own(e, blocks) -> bool:
    """Give a storage event the skb whose extension block holds its chunk."""
    below = [b for b in blocks if b <= e["chunk"] < b + 256]
    if not below:
        return False
    owner = blocks[max(below)]
    e.update(packet=owner["packet"], token=owner.get("token"), skb=owner["skb"])
    return True


# ---- the observer object ---------------------------------------------------------------

_warm = None  # (path, BpfObject, RingBuffer) kept loaded by a long-lived worker
KEEP_LOADED = False


def observer(st: ExitStack, path, map_flags=None):
    """The observer object and its ring buffer, with empty maps.

    With KEEP_LOADED (the worker sets it) the object and its lifecycle
    programs stay loaded between runs: loading and verifying it is the
    slowest step of a run under TCG. Otherwise it goes with st. map_flags
    ({"storage_a": BPF map_flags}) are set before the load; other flags
    mean another load.
    """
    global _warm
    from labkit.libbpf import BpfObject, RingBuffer

    map_flags = dict(map_flags or {})
    ident = (str(path), tuple(sorted(map_flags.items())))
    if KEEP_LOADED and _warm and _warm[0] == ident:
        _, obj, ring = _warm
        del ring.records[:]
        ring.overflow = False
        ring.drain(0)
        for name in ("actions", "tracked", "stash"):
            _clear(obj.map(name))
        ring.drain(0)
        del ring.records[:]
        return obj, ring
    lifecycle = lifecycle_programs()
    obj = BpfObject(path, programs=list(HOOK_PROGRAMS + lifecycle), map_flags=map_flags)
    try:
        ring = obj.own(RingBuffer(obj.map("events")))
        for prog in lifecycle:
            obj.own(obj.program(prog).attach())
    except BaseException:
        obj.close()
        raise
    if KEEP_LOADED:
        if _warm:
            _warm[1].close()
        _warm = (ident, obj, ring)
    else:
        st.enter_context(obj)
    return obj, ring


def _clear(m):
    """Empty a hash map, also while programs add and remove entries.

    Always deleting the first key is safe against concurrent deletes
    (get_next_key on a vanished key restarts the walk); the bound keeps a
    map that refills as fast as it empties from holding the run up.
    """
    key_size = {"actions": 12}.get(m.name, 8)
    for _ in range(MAP_WALK_LIMIT):
        try:
            key = m.get_next_key(None, key_size=key_size)
        except OSError:
            return
        try:
            m.delete(key)
        except OSError:
            pass


def series_id() -> str:
    from labkit import kernel

    h = hashlib.sha256()
    for p in kernel.series():
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


# ---- realising a topology with pyroute2 ------------------------------------------------------


class Built:
    """What a realised topology knows: per namespace an IPRoute, inodes, ifindexes."""

    def __init__(self):
        self.ipr = {}      # short ns -> IPRoute in it
        self.inode = {}    # short ns -> netns inode

    def ifindex(self, ns, dev) -> int:
        found = self.ipr[ns].link_lookup(ifname=dev)
        if not found:
            raise RunError(f"device {dev} does not exist in namespace {ns_name(ns)}",
                           fix="check the scenario's device names (labkit show describes it)")
        return found[0]

    def mac(self, ns, dev) -> str:
        link = self.ipr[ns].get_links(self.ifindex(ns, dev))[0]
        return link.get("IFLA_ADDRESS")


def _netlink(what, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # pyroute2 raises NetlinkError and friends
        raise RunError(f"{what}: {exc}") from None


def _remove_netns(name):
    from pyroute2 import netns

    try:
        netns.remove(name)
    except OSError:
        pass


def build_topology(st: ExitStack, topo: Topology) -> Built:
    from pyroute2 import IPRoute

    b = Built()
    for ns in topo.netns:
        name = ns_name(ns)
        if os.path.exists(f"/run/netns/{name}"):
            raise RunError(f"namespace {name} already exists (left by an earlier run?)",
                           fix="run: labkit cleanup")
        st.callback(_remove_netns, name)
        ipr = _netlink(f"create namespace {name}", IPRoute, netns=name, flags=os.O_CREAT)
        st.callback(ipr.close)
        b.ipr[ns] = ipr
        b.inode[ns] = os.stat(f"/run/netns/{name}").st_ino
        _netlink("bring up lo", ipr.link, "set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def addr(ns, dev, cidr):
        ip, plen = cidr.split("/")
        _netlink(f"address {cidr} on {dev}", b.ipr[ns].addr, "add", index=b.ifindex(ns, dev), address=ip,
                 prefixlen=int(plen))

    def up(ns, dev):
        _netlink(f"bring up {dev}", b.ipr[ns].link, "set", index=b.ifindex(ns, dev), state="up")

    def neigh(ns, dev, ip, mac):
        _netlink(f"neighbour {ip} on {dev}", b.ipr[ns].neigh, "replace", dst=ip, lladdr=mac,
                 ifindex=b.ifindex(ns, dev), state=0x80)  # NUD_PERMANENT

    for v in topo.veths:
        peer = {"ifname": v.b}
        if v.ns_b != v.ns_a:
            peer["net_ns_fd"] = ns_name(v.ns_b)
        _netlink(f"veth {v.a}/{v.b}", b.ipr[v.ns_a].link, "add", ifname=v.a, kind="veth", peer=peer)
        for ns, dev, cidr in ((v.ns_a, v.a, v.addr_a), (v.ns_b, v.b, v.addr_b)):
            if cidr:
                addr(ns, dev, cidr)
            up(ns, dev)
        if v.addr_a and v.addr_b:  # no ARP in the way of the first packet
            neigh(v.ns_a, v.a, v.addr_b.split("/")[0], b.mac(v.ns_b, v.b))
            neigh(v.ns_b, v.b, v.addr_a.split("/")[0], b.mac(v.ns_a, v.a))
    for t in topo.tunnels:
        for ns, local, remote, cidr in ((t.ns_a, t.under_a, t.under_b, t.addr_a),
                                        (t.ns_b, t.under_b, t.under_a, t.addr_b)):
            spec = {"gre": dict(gre_local=local, gre_remote=remote, gre_ttl=64),
                    "ipip": dict(ipip_local=local, ipip_remote=remote, ipip_ttl=64),
                    "vxlan": dict(vxlan_id=t.vni, vxlan_local=local, vxlan_group=remote, vxlan_port=4789),
                    "geneve": dict(geneve_collect_metadata=True) if t.external else
                    dict(geneve_id=t.vni, geneve_remote=remote)}[t.kind]
            _netlink(f"{t.kind} tunnel {t.name} in {ns_name(ns)}", b.ipr[ns].link, "add", ifname=t.name,
                     kind=t.kind, **spec)
            addr(ns, t.name, cidr)
            up(ns, t.name)
        if t.kind in ("vxlan", "geneve"):
            neigh(t.ns_a, t.name, t.addr_b.split("/")[0], b.mac(t.ns_b, t.name))
            neigh(t.ns_b, t.name, t.addr_a.split("/")[0], b.mac(t.ns_a, t.name))
    for n in topo.neighbours:
        neigh(n.ns, n.dev, n.ip, b.mac(n.mac_ns, n.mac_dev))
    for s in topo.sinks:
        _netlink(f"dummy {s.name}", b.ipr[s.ns].link, "add", ifname=s.name, kind="dummy")
        up(s.ns, s.name)
        if s.hold:
            _netlink(f"plug qdisc on {s.name}", b.ipr[s.ns].tc, "add", "plug", index=b.ifindex(s.ns, s.name),
                     limit=10000)
    return b


@contextmanager
def in_netns(name):
    from labkit.netns import NetNS

    with NetNS(name).enter():
        yield


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
        from labkit.bpfbuild import obj_path
        from labkit.cgroup import Cgroup
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
        return ACTION.pack(write, delete, h.mark, clone, peer, 0, 0, 0)

    @staticmethod
    def _load_own(st, attach) -> dict:
        """Your objects, each loaded once with every program the scenario
        attaches from it (so they share their maps): {path: (obj, reports)}.
        A verifier reject raises VerifierError."""
        from labkit.libbpf import BpfObject, RingBuffer

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
        from labkit.cgroup import Cgroup

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
        _netlink(f"mirred mirror on {m.dev}", ipr.tc, "add-filter", "bpf", index=ifx, handle=2, prio=2,
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
