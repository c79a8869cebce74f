"""Scenarios as data: validation, description and JSON, without a VM."""

import dataclasses

import pytest

from labkit import scenarios
from labkit.runtime.parts import Hook, Packet, ScenarioError, Topology, Tunnel, Veth
from labkit.runtime.scenario import Scenario


def two_ns(**kw):
    base = dict(name="t", description="test", topology=Topology(("a", "b"), (Veth("a", "lk-a0", "b", "lk-b0",
                                                                                   "10.0.0.1/24", "10.0.0.2/24"),)),
                hooks=(Hook("tc/ingress", "b", "lk-b0", write=("storage_a",)),), packets=(Packet("a", "10.0.0.2"),))
    base.update(kw)
    return Scenario(**base)


@pytest.mark.parametrize("name,params", scenarios.variants(), ids=lambda v: str(v))
def test_every_library_scenario_validates_and_round_trips(name, params):
    sc = scenarios.get(name, **params)
    again = Scenario.from_dict(sc.to_dict())
    assert again.to_dict() == sc.to_dict()
    assert again.validate().describe() == sc.describe()
    assert sc.expect, f"{name} has no expected path"


def test_library_covers_every_tunnel_and_clone_kind():
    seen = {(n, tuple(sorted(p.items()))) for n, p in scenarios.variants()}
    for kind in ("gre", "ipip", "vxlan", "geneve"):
        for create in ("before_encap", "outer", "after_decap"):
            assert ("tunnel", (("create", create), ("kind", kind))) in seen
    for kind in ("mirred", "bpf_clone_redirect", "af_packet"):
        assert ("clone", (("kind", kind),)) in seen


def test_describe_names_every_piece():
    text = scenarios.get("clone", kind="mirred").describe()
    for piece in ("lk-a", "lk-b", "lk-a0", "lk-b0", "lk-s", "mirred", "write storage_a", "send 1 x udp"):
        assert piece in text, piece


@pytest.mark.parametrize("change,message", [
    (dict(packets=(Packet("a", "10.0.0.300"),)), "bad IPv4 address '10.0.0.300'"),
    (dict(packets=(Packet("a", "10.9.9.9"),)), "no device has the destination address 10.9.9.9"),
    (dict(packets=(Packet("a", "10.0.0.2", proto="sctp"),)), "unknown protocol 'sctp'"),
    (dict(packets=(Packet("x", "10.0.0.2"),)), "names namespace 'x'"),
    (dict(hooks=(Hook("tc/ingress", "b", "lk-nope"),)), "names device 'lk-nope', which namespace b does not have"),
    (dict(hooks=(Hook("xdp", "b", "lk-b0"),)), "unknown hook 'xdp'"),
    (dict(hooks=(Hook("tc/ingress", "b", "lk-b0", write=("sk_storage",)),)), "unknown map 'sk_storage'"),
    (dict(hooks=(Hook("cgroup_skb/ingress", "b", mark=1),)), "need a tc hook"),
    (dict(packets=()), "no packets"),
])
def test_invalid_scenarios_say_what_is_wrong(change, message):
    with pytest.raises(ScenarioError) as err:
        two_ns(**change).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_tunnel_kind_and_bad_names():
    topo = two_ns().topology
    bad = dataclasses.replace(topo, tunnels=(Tunnel("wireguard", "a", "b", "10.0.0.1", "10.0.0.2",
                                                    "10.1.0.1/24", "10.1.0.2/24"),))
    with pytest.raises(ScenarioError, match="unknown tunnel kind 'wireguard' -- use one of gre, ipip"):
        two_ns(topology=bad).validate()
    under = dataclasses.replace(topo, tunnels=(Tunnel("gre", "a", "b", "10.0.0.7", "10.0.0.2",
                                                      "10.1.0.1/24", "10.1.0.2/24"),))
    with pytest.raises(ScenarioError, match="underlay address 10.0.0.7 is not on a veth in a"):
        two_ns(topology=under).validate()
    eth = dataclasses.replace(topo, veths=(Veth("a", "eth0", "b", "lk-b0"),))
    with pytest.raises(ScenarioError, match="must start with 'lk'"):
        two_ns(topology=eth, packets=(Packet("a", "10.0.0.2"),)).validate()


def test_unknown_scenario_and_parameter():
    with pytest.raises(ScenarioError, match="no scenario named 'nope'"):
        scenarios.get("nope")
    with pytest.raises(ScenarioError, match="has no parameter 'colour'"):
        scenarios.get("tunnel", colour="red")
    with pytest.raises(ScenarioError, match="kind=wg is not one of gre, ipip, vxlan, geneve"):
        scenarios.get("tunnel", kind="wg")


def test_from_dict_rejects_unknown_fields():
    d = two_ns().to_dict()
    d["hooks"][0]["colour"] = "red"
    with pytest.raises(ScenarioError, match="unknown field"):
        Scenario.from_dict(d)


@pytest.mark.parametrize("design,slot", [("meta", "meta"), ("gated", "gated"), ("stash", "stash")])
def test_with_design_moves_storage_a_to_the_design(design, slot):
    sc = scenarios.get("two_maps").with_flags(storage_a=("clone",))
    moved = sc.with_design(design)
    assert moved.params["design"] == design and moved.expect == () and "storage_a" not in moved.map_flags
    for before, after in zip(sc.hooks, moved.hooks):
        assert after.write == tuple(dict.fromkeys(slot if s == "storage_a" else s for s in before.write))
        assert "storage_a" not in after.write + after.delete
    assert any(slot in h.write for h in moved.hooks)
    assert sc.with_design("storage") is sc


def test_with_design_refuses_what_a_design_cannot_do():
    with pytest.raises(ScenarioError, match="unknown design"):
        scenarios.get("basic").with_design("xdp_meta")
    sc = scenarios.get("basic")
    hooks = (dataclasses.replace(sc.hooks[0], delete=("storage_a",)),) + sc.hooks[1:]
    with pytest.raises(ScenarioError, match="the metadata buffer has no delete"):
        dataclasses.replace(sc, hooks=hooks).with_design("meta")
