"""basic: storage created at tc ingress, read at cgroup_skb ingress and by
a socket filter on the receiving socket: all three see the same skb.

With ``proto=icmp`` there is no socket: the echo request is consumed by
the kernel, and the storage is freed with it.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import Hook, Packet
from labkit.runtime.scenario import Scenario

from ._common import B_IP, pair

PARAMS = {"proto": ("udp", "tcp", "icmp")}


def build(proto="udp"):
    return Scenario(
        name="basic",
        description="tc ingress writes; cgroup_skb ingress and a socket filter read",
        topology=pair(),
        hooks=(Hook("tc/ingress", "b", "lk-b0", write=("storage_a",)),
               Hook("cgroup_skb/ingress", "b"),
               Hook("socket_filter", "b")),
        packets=(Packet("a", B_IP, proto=proto, count=2),),
        expect=(step("storage_alloc", map="storage_a"),
                at("tc/ingress", "lk-b0", storage_a="created", same_skb=True),
                at("cgroup_skb/ingress", storage_a="present", same_skb=True),
                at("socket_filter", storage_a="present", same_skb=True)) if proto != "icmp" else
               (step("storage_alloc", map="storage_a"), at("tc/ingress", "lk-b0", storage_a="created", same_skb=True),
                step("storage_free", same_skb=True)),
        params={"proto": proto},
    ).validate()
