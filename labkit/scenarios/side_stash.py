"""side_stash: the design that runs on stock kernels, a hash map keyed by
the skb's address, cleaned up from the consume_skb/kfree_skb tracepoints.

Written next to skb storage at the same hook, through the same crossings:

- ``veth``: the scrub drops the storage; the stash entry, keyed by the
  pointer, survives into the other namespace.
- ``clone``: the clone is another pointer, so it has no stash entry.
- ``tunnel``: the outer packet is the same skb, so it keeps the entry.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import Hook, Packet, Sink, Tunnel
from labkit.runtime.scenario import Scenario

from ._common import A_IP, B_IP, pair

PARAMS = {"path": ("veth", "clone", "tunnel")}
BOTH = ("storage_a", "stash")


def build(path="veth"):
    if path == "veth":
        topo = pair()
        hooks = (Hook("tc/egress", "a", "lk-a0", write=BOTH), Hook("tc/ingress", "b", "lk-b0"),
                 Hook("cgroup_skb/ingress", "b"))
        dst = B_IP
        expect = (at("tc/egress", "lk-a0", storage_a="created", stash="created"),
                  step("scrub", same_skb=True),
                  at("tc/ingress", "lk-b0", storage_a="absent", stash="present", same_skb=True))
    elif path == "clone":
        topo = pair(sinks=(Sink("b", "lk-s"),))
        hooks = (Hook("tc/ingress", "b", "lk-b0", write=BOTH, clone_to="lk-s"), Hook("tc/egress", "b", "lk-s"),
                 Hook("cgroup_skb/ingress", "b"))
        dst = B_IP
        expect = (at("tc/ingress", "lk-b0", storage_a="created", stash="created"),
                  step("clone"),
                  at("tc/egress", "lk-s", storage_a="refused", stash="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="refused", stash="present", new_skb=True))
    elif path == "tunnel":
        topo = pair(tunnels=(Tunnel("gre", "a", "b", A_IP, B_IP, "10.1.0.1/24", "10.1.0.2/24"),))
        hooks = (Hook("tc/egress", "a", "lk-t", write=BOTH), Hook("tc/egress", "a", "lk-a0"))
        dst = "10.1.0.2"
        expect = (at("tc/egress", "lk-t", storage_a="created", stash="created"),
                  step("scrub", same_skb=True),
                  at("tc/egress", "lk-a0", storage_a="absent", stash="present", same_skb=True))
    else:
        raise ValueError(path)
    return Scenario(name="side_stash", description=f"the skb-pointer hash side stash, {path}", topology=topo,
                    hooks=hooks, packets=(Packet("a", dst),), expect=expect, params={"path": path}).validate()
