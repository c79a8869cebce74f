"""two_maps: two skb storage maps on one skb are independent.

tc ingress writes both; cgroup_skb ingress deletes B; the socket filter
still finds A, and B gone.
"""

from labkit.runtime.events import at
from labkit.runtime.parts import Hook, Packet
from labkit.runtime.scenario import Scenario

from ._common import B_IP, pair

PARAMS = {}


def build():
    hooks = (Hook("tc/ingress", "b", "lk-b0", write=("storage_a", "storage_b")),
             Hook("cgroup_skb/ingress", "b", delete=("storage_b",)),
             Hook("socket_filter", "b"))
    expect = (at("tc/ingress", "lk-b0", storage_a="created", storage_b="created"),
              at("cgroup_skb/ingress", storage_a="present", storage_b="absent", same_skb=True),
              at("socket_filter", storage_a="present", storage_b="absent", same_skb=True))
    return Scenario(name="two_maps", description="two maps on one skb, one deleted", topology=pair(),
                    hooks=hooks, packets=(Packet("a", B_IP),), expect=expect).validate()
