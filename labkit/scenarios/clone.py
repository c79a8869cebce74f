"""clone: storage against the three ways the stack clones a packet.

A clone shares the original's extension block, so the storage becomes
"refused" on both for as long as both live (a plug qdisc on the sink lk-s
keeps the clone alive until the run ends), and is freed with the last one.

- ``mirred``: a tc mirred action mirrors the packet out of lk-s.
- ``bpf_clone_redirect``: the tc program itself clones it to lk-s.
- ``af_packet``: an AF_PACKET tap on lk-a0 gets a clone of what leaves it.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import Hook, Mirror, Packet, Sink, Tap
from labkit.runtime.scenario import Scenario

from ._common import B_IP, pair

PARAMS = {"kind": ("mirred", "bpf_clone_redirect", "af_packet")}


def build(kind="mirred"):
    mirrors, taps = (), ()
    if kind in ("mirred", "bpf_clone_redirect"):
        topo = pair(sinks=(Sink("b", "lk-s"),))
        writer = Hook("tc/ingress", "b", "lk-b0", write=("storage_a",),
                      clone_to="lk-s" if kind == "bpf_clone_redirect" else None)
        hooks = (writer, Hook("tc/egress", "b", "lk-s"), Hook("cgroup_skb/ingress", "b"))
        if kind == "mirred":
            mirrors = (Mirror("b", "lk-b0", "lk-s"),)
        expect = (at("tc/ingress", "lk-b0", storage_a="created"),
                  step("clone", where="tcf_mirred" if kind == "mirred" else "bpf_clone_redirect"),
                  at("tc/egress", "lk-s", storage_a="refused", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="refused", new_skb=True),
                  step("storage_free"))
    elif kind == "af_packet":
        topo = pair()
        hooks = (Hook("tc/egress", "a", "lk-a0", write=("storage_a",)), Hook("af_packet", "a", "lk-a0"),
                 Hook("tc/ingress", "b", "lk-b0"), Hook("cgroup_skb/ingress", "b"))
        taps = (Tap("a", "lk-a0"),)
        expect = (at("tc/egress", "lk-a0", storage_a="created"),
                  step("clone", where="dev_queue_xmit_nit"),
                  at("af_packet", storage_a="refused", same_skb=True),
                  at("tc/ingress", "lk-b0", storage_a="absent", new_skb=True),
                  step("storage_free"))
    else:
        raise ValueError(kind)
    return Scenario(name="clone", description=f"a clone made by {kind}", topology=topo, hooks=hooks,
                    packets=(Packet("a", B_IP),), mirrors=mirrors, taps=taps, expect=expect,
                    params={"kind": kind}).validate()
