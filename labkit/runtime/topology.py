"""Realising a scenario's topology with pyroute2: its namespaces (lk-<name>),
veths, tunnels, neighbours and sinks, each removed with the run's ExitStack;
entering a namespace."""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager

from labkit.errors import LabError
from labkit.runtime.parts import Topology

PREFIX = "lk-"


class RunError(LabError):
    """A scenario could not be realised or run in the VM."""


def ns_name(short: str) -> str:
    return PREFIX + short


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


def netlink(what, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # pyroute2 raises NetlinkError and friends
        raise RunError(f"{what}: {exc}") from None


def remove_netns(name):
    from pyroute2 import netns

    try:
        netns.remove(name)
    except OSError:
        pass


def patient_netns():
    """Give pyroute2's namespace helper (a child process it waits for, 2 s each try, 10 s in all) a
    minute. Under clock="icount" the guest's clock jumps to its next timer whenever the guest
    waits on the host (the helper's Python read over 9p from a busy host), so those deadlines can
    pass in almost no real time; and a namespace that does come up never waits that long."""
    from pyroute2 import config

    config.default_communicate_timeout = max(config.default_communicate_timeout, 20)
    config.default_create_socket_timeout = max(config.default_create_socket_timeout, 60)


def build_topology(st: ExitStack, topo: Topology) -> Built:
    from pyroute2 import IPRoute

    patient_netns()
    b = Built()
    for ns in topo.netns:
        name = ns_name(ns)
        if os.path.exists(f"/run/netns/{name}"):
            raise RunError(f"namespace {name} already exists (left by an earlier run?)",
                           fix="run: labkit cleanup")
        st.callback(remove_netns, name)
        ipr = netlink(f"create namespace {name}", IPRoute, netns=name, flags=os.O_CREAT)
        st.callback(ipr.close)
        b.ipr[ns] = ipr
        b.inode[ns] = os.stat(f"/run/netns/{name}").st_ino
        netlink("bring up lo", ipr.link, "set", index=ipr.link_lookup(ifname="lo")[0], state="up")

    def addr(ns, dev, cidr):
        ip, plen = cidr.split("/")
        netlink(f"address {cidr} on {dev}", b.ipr[ns].addr, "add", index=b.ifindex(ns, dev), address=ip,
                 prefixlen=int(plen))

    def up(ns, dev):
        netlink(f"bring up {dev}", b.ipr[ns].link, "set", index=b.ifindex(ns, dev), state="up")

    def neigh(ns, dev, ip, mac):
        netlink(f"neighbour {ip} on {dev}", b.ipr[ns].neigh, "replace", dst=ip, lladdr=mac,
                 ifindex=b.ifindex(ns, dev), state=0x80)  # NUD_PERMANENT

    for v in topo.veths:
        peer = {"ifname": v.b}
        if v.ns_b != v.ns_a:
            peer["net_ns_fd"] = ns_name(v.ns_b)
        netlink(f"veth {v.a}/{v.b}", b.ipr[v.ns_a].link, "add", ifname=v.a, kind="veth", peer=peer)
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
            netlink(f"{t.kind} tunnel {t.name} in {ns_name(ns)}", b.ipr[ns].link, "add", ifname=t.name,
                     kind=t.kind, **spec)
            addr(ns, t.name, cidr)
            up(ns, t.name)
        if t.kind in ("vxlan", "geneve"):
            neigh(t.ns_a, t.name, t.addr_b.split("/")[0], b.mac(t.ns_b, t.name))
            neigh(t.ns_b, t.name, t.addr_a.split("/")[0], b.mac(t.ns_a, t.name))
    for n in topo.neighbours:
        neigh(n.ns, n.dev, n.ip, b.mac(n.mac_ns, n.mac_dev))
    for s in topo.sinks:
        netlink(f"dummy {s.name}", b.ipr[s.ns].link, "add", ifname=s.name, kind="dummy")
        up(s.ns, s.name)
        if s.hold:
            netlink(f"plug qdisc on {s.name}", b.ipr[s.ns].tc, "add", "plug", index=b.ifindex(s.ns, s.name),
                     limit=10000)
    return b


@contextmanager
def in_netns(name):
    from labkit.guest.netns import NetNS

    with NetNS(name).enter():
        yield
