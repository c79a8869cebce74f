"""mark_vs_storage: the same packets carry skb->mark and skb storage.

tc egress on lk-a0 sets both. Into another namespace (xnet) the scrub
clears the mark and the storage; inside one namespace the mark survives
and the storage does not.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import Hook, Packet, Topology, Veth
from labkit.runtime.scenario import Scenario

from ._common import B_IP, pair

PARAMS = {"path": ("netns", "same_netns")}
MARK = 0x5eed


def build(path="netns"):
    if path == "netns":
        topo, peer_ns, peer = pair(), "b", "lk-b0"
        packets = (Packet("a", B_IP),)
    elif path == "same_netns":
        topo = Topology(netns=("a",), veths=(Veth("a", "lk-a0", "a", "lk-a1", None, "10.0.0.2/24"),))
        peer_ns, peer = "a", "lk-a1"
        packets = (Packet("a", B_IP, via="lk-a0", src_ip="10.0.0.9"),)
    else:
        raise ValueError(path)
    hooks = (Hook("tc/egress", "a", "lk-a0", write=("storage_a",), mark=MARK),
             Hook("tc/ingress", peer_ns, peer), Hook("cgroup_skb/ingress", peer_ns))
    kept = 0 if path == "netns" else MARK
    expect = (at("tc/egress", "lk-a0", storage_a="created", mark=MARK),
              step("scrub", xnet=path == "netns", same_skb=True),
              at("tc/ingress", peer, storage_a="absent", mark=kept, same_skb=True),
              at("cgroup_skb/ingress", storage_a="absent", mark=kept, same_skb=True))
    return Scenario(name="mark_vs_storage", description=f"skb->mark and storage, {path.replace('_', ' ')}",
                    topology=topo, hooks=hooks, packets=packets, expect=expect,
                    params={"path": path}).validate()
