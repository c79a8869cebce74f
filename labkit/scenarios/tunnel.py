"""tunnel: storage against GRE, IPIP, VXLAN and GENEVE.

lk-a sends to lk-b through tunnel lk-t over the veth lk-a0 <-> lk-b0.
Storage is created at one point (``create``) and observed everywhere:

- ``before_encap``: tc egress of lk-t (the inner packet); the tunnel's
  transmit path scrubs the skb it encapsulates, so the outer packet has none.
- ``outer``: tc ingress of lk-b0 (the outer packet); decapsulation scrubs it.
- ``after_decap``: tc ingress of lk-t in lk-b; it reaches the socket.
"""

from labkit.runtime.events import at, step
from labkit.runtime.parts import TUNNEL_KINDS, Hook, Packet, Tunnel
from labkit.runtime.scenario import Scenario

from ._common import A_IP, B_IP, pair

PARAMS = {"kind": TUNNEL_KINDS, "create": ("before_encap", "outer", "after_decap")}
INNER_A, INNER_B = "10.1.0.1/24", "10.1.0.2/24"
XMIT = {"gre": "ip_tunnel_xmit", "ipip": "ip_tunnel_xmit", "vxlan": "vxlan_xmit", "geneve": "geneve"}
RCV = {"gre": "ip_tunnel_rcv", "ipip": "ip_tunnel_rcv", "vxlan": "vxlan_rcv", "geneve": "geneve"}
WRITER = {"before_encap": ("tc/egress", "a", "lk-t"), "outer": ("tc/ingress", "b", "lk-b0"),
          "after_decap": ("tc/ingress", "b", "lk-t")}


def build(kind="gre", create="before_encap"):
    topo = pair(tunnels=(Tunnel(kind, "a", "b", A_IP, B_IP, INNER_A, INNER_B),))
    points = [("tc/egress", "a", "lk-t"), ("tc/egress", "a", "lk-a0"), ("tc/ingress", "b", "lk-b0"),
              ("tc/ingress", "b", "lk-t")]
    w = WRITER[create]
    hooks = tuple(Hook(at_, ns, dev, write=("storage_a",) if (at_, ns, dev) == w else ())
                  for at_, ns, dev in points) + (Hook("cgroup_skb/ingress", "b"),)
    first = at(w[0], w[2], ns=w[1], storage_a="created")
    if create == "before_encap":
        expect = (first, step("scrub", where=XMIT[kind], same_skb=True),
                  at("tc/egress", "lk-a0", storage_a="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="absent"))
    elif create == "outer":
        expect = (first, step("scrub", where=RCV[kind], same_skb=True),
                  at("tc/ingress", "lk-t", storage_a="absent", same_skb=True),
                  at("cgroup_skb/ingress", storage_a="absent", same_skb=True))
    else:
        expect = (first, at("cgroup_skb/ingress", storage_a="present", same_skb=True))
    return Scenario(name="tunnel", description=f"{kind} tunnel, storage created {create.replace('_', ' ')}",
                    topology=topo, hooks=hooks, packets=(Packet("a", INNER_B.split("/")[0]),),
                    expect=expect, params={"kind": kind, "create": create}).validate()
