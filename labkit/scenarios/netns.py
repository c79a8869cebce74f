"""netns: storage against netns and veth crossings.

- ``veth``: written at tc egress in lk-a, gone at tc ingress in lk-b: the
  veth's skb_scrub_packet(xnet=true) drops the extensions.
- ``same_netns``: a veth pair inside one namespace; skb_scrub_packet(xnet=
  false) keeps skb->mark but still drops the extensions.
- ``redirect_peer``: tc ingress in the middle namespace hands the packet
  straight to the peer of a veth (bpf_redirect_peer), the fast path into a
  container; it is scrubbed on the way all the same. The writer sets
  skb->mark too, to compare with ``mark_vs_storage``.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import Hook, Neigh, Packet, Topology, Veth
from labkit.runtime.scenario import Scenario

from ._common import B_IP, pair

PARAMS = {"path": ("veth", "same_netns", "redirect_peer")}
MARK = 0x5eed  # redirect_peer also sets skb->mark, to compare with the veth crossings (mark_vs_storage)


def build(path="veth"):
    if path == "veth":
        topo = pair()
        hooks = (Hook("tc/egress", "a", "lk-a0", write=("storage_a",)),
                 Hook("tc/ingress", "b", "lk-b0"),
                 Hook("cgroup_skb/ingress", "b"))
        packets = (Packet("a", B_IP),)
        expect = (at("tc/egress", "lk-a0", storage_a="created"),
                  step("scrub", xnet=True, where="veth", same_skb=True),
                  at("tc/ingress", "lk-b0", storage_a="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="absent", same_skb=True))
        desc = "veth into another namespace"
    elif path == "same_netns":
        topo = Topology(netns=("a",), veths=(Veth("a", "lk-a0", "a", "lk-a1", None, "10.0.0.2/24"),))
        hooks = (Hook("tc/egress", "a", "lk-a0", write=("storage_a",)),
                 Hook("tc/ingress", "a", "lk-a1"),
                 Hook("cgroup_skb/ingress", "a"))
        packets = (Packet("a", B_IP, via="lk-a0", src_ip="10.0.0.9"),)
        expect = (at("tc/egress", "lk-a0", storage_a="created"),
                  step("scrub", xnet=False, where="veth", same_skb=True),
                  at("tc/ingress", "lk-a1", storage_a="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="absent", same_skb=True))
        desc = "a veth pair inside one namespace"
    elif path == "redirect_peer":
        topo = Topology(netns=("s", "h", "c"),
                        veths=(Veth("s", "lk-s0", "h", "lk-h1", "10.0.0.1/24", None),
                               Veth("h", "lk-h0", "c", "lk-c0", None, "10.0.0.2/24")),
                        neighbours=(Neigh("s", "lk-s0", B_IP, "h", "lk-h1"),))
        hooks = (Hook("tc/ingress", "h", "lk-h1", write=("storage_a",), mark=MARK, redirect_peer="lk-h0"),
                 Hook("tc/ingress", "c", "lk-c0"),
                 Hook("cgroup_skb/ingress", "c"))
        packets = (Packet("s", B_IP),)
        expect = (at("tc/ingress", "lk-h1", storage_a="created"),
                  step("scrub", where="skb_do_redirect", same_skb=True),
                  at("tc/ingress", "lk-c0", storage_a="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="absent", same_skb=True))
        desc = "bpf_redirect_peer from the host side into the container's veth"
    else:
        raise ValueError(path)
    return Scenario(name="netns", description=desc, topology=topo, hooks=hooks, packets=packets,
                    expect=expect, params={"path": path}).validate()
