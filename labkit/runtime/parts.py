"""What a scenario is made of, as plain data: the topology's parts (``Veth``, ``Tunnel``,
``Sink``, ``Neigh``, ``Topology``), where the observer and your programs go (``Hook``,
``Attach``), the packets (``Packet``), clone points (``Mirror``, ``Tap``); the names, hooks
and map flags they may use; and ``ScenarioError``. ``labkit.runtime.scenario`` puts them together.

Names: namespace ``a`` becomes ``lk-a``; every device name starts with
``lk`` so ``labkit cleanup`` can find what a crashed run left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import LabError

TUNNEL_KINDS = ("gre", "ipip", "vxlan", "geneve")
HOOK_POINTS = ("tc/ingress", "tc/egress", "cgroup_skb/ingress", "socket_filter", "af_packet")
# Where your own programs go: "trace" attaches by the program's section
# (tp_btf/..., fentry/..., kprobe/...); a socket filter goes on the receiving sockets.
ATTACH_POINTS = ("tc/ingress", "tc/egress", "cgroup_skb/ingress", "socket_filter", "trace", "xdp")
# Where a hook keeps the packet's token: two skb storage maps (the RFC), the side
# stash (a hash by skb address, reaped at every free), the skb's BPF metadata
# buffer (the proposal on the list) and the gated stash (reaped at the gated
# skb_free tracepoint, for skbs armed with bpf_trace_skb()).
SLOTS = ("storage_a", "storage_b", "stash", "meta", "gated")
# Each design's slot, for Scenario.with_design(): "storage" is the RFC's.
DESIGNS = {"storage": "storage_a", "meta": "meta", "gated": "gated", "stash": "stash"}
# Map flags a scenario may give the observer's two skb storage maps (the lab
# kernel's UAPI values; BPF_F_NO_PREALLOC is always set).
MAP_FLAGS = {"clone": 1 << 9,          # BPF_F_CLONE: skb_clone() copies the element
             "keep_tunnel": 1 << 19,   # BPF_F_SKB_KEEP_TUNNEL: kept across encap/decap
             "keep_netns": 1 << 20}    # BPF_F_SKB_KEEP_NETNS: kept across a netns crossing
FLAG_NAMES = {"clone": "BPF_F_CLONE", "keep_tunnel": "BPF_F_SKB_KEEP_TUNNEL", "keep_netns": "BPF_F_SKB_KEEP_NETNS"}
PROTOS = ("udp", "tcp", "icmp")
IFNAMSIZ = 15


class ScenarioError(LabError):
    """A scenario that cannot be built: says which part and why."""


def bad(what, fix=None):
    raise ScenarioError(what, fix=fix)


@dataclass(frozen=True)
class Veth:
    """A veth pair: ``a`` in namespace ``ns_a``, its peer ``b`` in ``ns_b``."""

    ns_a: str
    a: str
    ns_b: str
    b: str
    addr_a: str | None = None  # "10.0.0.1/24"
    addr_b: str | None = None


@dataclass(frozen=True)
class Tunnel:
    """A tunnel device ``name`` in both namespaces, over the underlay
    addresses ``under_a``/``under_b`` (on a veth already in the topology)."""

    kind: str
    ns_a: str
    ns_b: str
    under_a: str
    under_b: str
    addr_a: str
    addr_b: str
    name: str = "lk-t"
    vni: int = 42
    # GENEVE only: collect_md ("external") on both ends. The device then
    # sends only what a BPF program gave a tunnel key (bpf_skb_set_tunnel_key)
    # and hands received packets their tunnel metadata (options included).
    external: bool = False


@dataclass(frozen=True)
class Sink:
    """A dummy device; with hold, a plug qdisc keeps what is sent there
    (a clone stays alive) until the run ends."""

    ns: str
    name: str
    hold: bool = True


@dataclass(frozen=True)
class Mirror:
    """tc mirred: mirror every test packet seen on dev (ingress or egress)
    out of ``to`` (a clone, made by the mirred action)."""

    ns: str
    dev: str
    to: str
    ingress: bool = True


@dataclass(frozen=True)
class Tap:
    """An AF_PACKET socket bound to dev: the kernel hands it a clone."""

    ns: str
    dev: str


@dataclass(frozen=True)
class Hook:
    """The observer at one hook, and what it does to test packets first.

    at: one of HOOK_POINTS. dev: the device for tc hooks and taps (for
    cgroup_skb and socket_filter the receiving socket in ns is used).
    write/delete: slots (``storage_a``, ``storage_b``, ``stash``, ``meta``,
    ``gated``; the metadata buffer has no delete).
    mark: set skb->mark. clone_to: bpf_clone_redirect() a clone out of that
    device. redirect_peer: bpf_redirect_peer() to that veth's peer.
    """

    at: str
    ns: str
    dev: str | None = None
    write: tuple = ()
    delete: tuple = ()
    mark: int = 0
    clone_to: str | None = None
    redirect_peer: str | None = None

    @property
    def label(self) -> str:
        return f"{self.at}@{self.dev}" if self.dev else f"{self.at}@{self.ns}"


@dataclass(frozen=True)
class Attach:
    """A program of your own (a .bpf.o and the program's name) at a tc hook
    (after the lab's observer), XDP on a device, on the run's cgroup, as the socket filter
    of the receiving sockets in ns (instead of the observer's) or, with
    at="trace", attached by its section. Programs from one .bpf.o are
    loaded together and share its maps."""

    obj: str
    prog: str
    at: str
    ns: str = ""
    dev: str | None = None


@dataclass(frozen=True)
class Packet:
    """count packets of proto from namespace src to address dst."""

    src: str
    dst: str
    proto: str = "udp"
    size: int = 32
    port: int = 7000
    count: int = 1
    via: str | None = None     # send as an Ethernet frame out of this device (AF_PACKET)
    src_ip: str | None = None  # source address (default: src's address on dst's subnet)


@dataclass(frozen=True)
class Neigh:
    """A static neighbour: in ns, on dev, ip is at the MAC of mac_dev in mac_ns."""

    ns: str
    dev: str
    ip: str
    mac_ns: str
    mac_dev: str


@dataclass
class Topology:
    netns: tuple = ()
    veths: tuple = ()
    tunnels: tuple = ()
    sinks: tuple = ()
    neighbours: tuple = ()

    def devices(self) -> dict:
        """(ns, device name) -> what makes it."""
        out = {}
        for ns in self.netns:
            out[(ns, "lo")] = "loopback"
        for v in self.veths:
            out[(v.ns_a, v.a)] = v
            out[(v.ns_b, v.b)] = v
        for t in self.tunnels:
            out[(t.ns_a, t.name)] = t
            out[(t.ns_b, t.name)] = t
        for s in self.sinks:
            out[(s.ns, s.name)] = s
        return out

    def addresses(self) -> dict:
        """ip -> (ns, device)."""
        out = {}
        for v in self.veths:
            for ns, dev, addr in ((v.ns_a, v.a, v.addr_a), (v.ns_b, v.b, v.addr_b)):
                if addr:
                    out[addr.split("/")[0]] = (ns, dev)
        for t in self.tunnels:
            out[t.addr_a.split("/")[0]] = (t.ns_a, t.name)
            out[t.addr_b.split("/")[0]] = (t.ns_b, t.name)
        return out
