"""The lab kernel's map flags, through the same scenarios as the default rules.

BPF_F_CLONE (patch 0005), BPF_F_SKB_KEEP_TUNNEL and BPF_F_SKB_KEEP_NETNS
(patch 0006): every scenario runs once with the flag on storage_a and
once without, and both runs must show what the kernel documentation
(kernel/README.md) says. storage_b never has a flag: in the same packet it
shows the default next to the flagged map.
"""

from dataclasses import replace

import pytest

from labkit import scenarios
from labkit.runtime import run as runtime
from labkit.runtime.events import at, expect, step
from labkit.runtime.parts import TUNNEL_KINDS


def run(name, flags=(), **params):
    sc = scenarios.get(name, **params)
    # storage_b is written wherever storage_a is: the unflagged witness
    hooks = tuple(replace(h, write=("storage_a", "storage_b")) if "storage_a" in h.write else h for h in sc.hooks)
    sc = replace(sc, hooks=hooks, expect=())
    if flags:
        sc = sc.with_flags(storage_a=flags)
    log = runtime.run(sc.validate())
    assert log.packets() == [1], f"the packet was not seen: {log.timeline()}"
    return log


# Where the tunnels scrub (the skb_storage_scrub tracepoint's call site).
SCRUB_XMIT = {"gre": "iptunnel_xmit", "ipip": "iptunnel_xmit", "vxlan": "iptunnel_xmit", "geneve": "geneve_build_skb"}
SCRUB_RCV = "__iptunnel_pull_header"


def deleting_at_socket():
    """GRE, storage_a created after decapsulation and deleted by bpf_skb_storage_delete() at cgroup_skb ingress."""
    sc = scenarios.get("tunnel", kind="gre", create="after_decap")
    hooks = tuple(replace(h, delete=("storage_a",)) if h.at == "cgroup_skb/ingress" else h for h in sc.hooks)
    return replace(sc, hooks=hooks, expect=()).validate()


def kinds(log, kind, **fields):
    return [e for e in log.events if e["kind"] == kind and all(e.get(k) == v for k, v in fields.items())]


# ---- BPF_F_CLONE ---------------------------------------------------------------------------

CLONER = {"mirred": "tcf_mirred", "bpf_clone_redirect": "bpf_clone_redirect", "af_packet": "dev_queue_xmit_nit"}


@pytest.mark.parametrize("kind", ["mirred", "bpf_clone_redirect"])
def test_clone_flag_gives_the_clone_its_own_copy(kind):
    log = run("clone", ("clone",), kind=kind)
    created, clone, copy, on_clone, on_orig = expect(log, (
        at("tc/ingress", "lk-b0", storage_a="created", storage_b="created"),
        step("clone", where=CLONER[kind]),
        step("storage_clone", map="storage_a", same_skb=True),
        at("tc/egress", "lk-s", storage_a="present", storage_b="absent", same_skb=True),
        at("cgroup_skb/ingress", storage_a="present", storage_b="present", new_skb=True)))
    assert copy["parent"] == created["skb"] == on_orig["skb"]
    value = created["maps"]["storage_a"]["value"]
    assert on_clone["maps"]["storage_a"]["value"] == value == on_orig["maps"]["storage_a"]["value"]
    assert not kinds(log, "storage_clone", map="storage_b"), "storage_b has no BPF_F_CLONE: it must not be copied"
    # two storages now, each freed with its own skb
    freed = kinds(log, "storage_free", map="storage_a")
    assert {e["skb"] for e in freed} == {clone["skb"], created["skb"]}, log.timeline()


@pytest.mark.parametrize("kind", ["mirred", "bpf_clone_redirect"])
def test_without_the_clone_flag_both_are_refused(kind):
    log = run("clone", kind=kind)
    expect(log, (
        at("tc/ingress", "lk-b0", storage_a="created"),
        step("clone", where=CLONER[kind]),
        at("tc/egress", "lk-s", storage_a="refused", storage_b="refused", same_skb=True),
        at("cgroup_skb/ingress", storage_a="refused", storage_b="refused", new_skb=True)))
    assert not kinds(log, "storage_clone")
    assert len(kinds(log, "storage_free", map="storage_a")) == 1, "one shared storage, freed once"


def test_clone_flag_on_an_af_packet_tap():
    log = run("clone", ("clone",), kind="af_packet")
    created, clone, copy, tapped = expect(log, (
        at("tc/egress", "lk-a0", storage_a="created", storage_b="created"),
        step("clone", where="dev_queue_xmit_nit"),
        step("storage_clone", map="storage_a", same_skb=True),
        at("af_packet", storage_a="present", storage_b="absent", same_skb=True)))
    assert copy["parent"] == created["skb"]
    assert tapped["maps"]["storage_a"]["value"] == created["maps"]["storage_a"]["value"]


# ---- BPF_F_SKB_KEEP_TUNNEL (and _NETNS for the underlay crossing) -----------------------------

@pytest.mark.parametrize("kind", TUNNEL_KINDS)
def test_keep_tunnel_survives_encap_not_the_underlay_crossing(kind):
    log = run("tunnel", ("keep_tunnel",), kind=kind, create="before_encap")
    created, kept, outer, dropped = expect(log, (
        at("tc/egress", "lk-t", ns="a", storage_a="created", storage_b="created"),
        step("storage_scrub", map="storage_a", reason="tunnel", kept=True, where=SCRUB_XMIT[kind], same_skb=True),
        at("tc/egress", "lk-a0", storage_a="present", storage_b="absent", same_skb=True),
        step("storage_scrub", map="storage_a", reason="netns", kept=False, same_skb=True)))
    assert outer["maps"]["storage_a"]["value"] == created["maps"]["storage_a"]["value"]
    assert kinds(log, "storage_scrub", map="storage_b", reason="tunnel", kept=False)
    expect(log, (at("cgroup_skb/ingress", storage_a="absent"),))


@pytest.mark.parametrize("kind", TUNNEL_KINDS)
def test_keep_tunnel_and_netns_carry_storage_end_to_end(kind):
    log = run("tunnel", ("keep_tunnel", "keep_netns"), kind=kind, create="before_encap")
    created, *_, inner, sock = expect(log, (
        at("tc/egress", "lk-t", ns="a", storage_a="created"),
        step("storage_scrub", map="storage_a", reason="tunnel", kept=True, where=SCRUB_XMIT[kind], same_skb=True),
        step("storage_scrub", map="storage_a", reason="netns", kept=True, same_skb=True),
        step("storage_scrub", map="storage_a", reason="tunnel", kept=True, where=SCRUB_RCV, same_skb=True),
        at("tc/ingress", "lk-t", ns="b", storage_a="present", storage_b="absent", same_skb=True),
        at("cgroup_skb/ingress", storage_a="present", same_skb=True)))
    assert sock["maps"]["storage_a"]["value"] == created["maps"]["storage_a"]["value"] == log.header["tokens"][0]


@pytest.mark.parametrize("kind", ["gre", "vxlan"])
def test_keep_netns_alone_does_not_survive_a_tunnel(kind):
    log = run("tunnel", ("keep_netns",), kind=kind, create="before_encap")
    expect(log, (
        at("tc/egress", "lk-t", ns="a", storage_a="created"),
        step("storage_scrub", map="storage_a", reason="tunnel", kept=False, same_skb=True),
        at("tc/egress", "lk-a0", storage_a="absent", same_skb=True)))


@pytest.mark.parametrize("kind", ["gre", "geneve"])
def test_keep_tunnel_on_the_outer_packet_survives_decap(kind):
    log = run("tunnel", ("keep_tunnel",), kind=kind, create="outer")
    expect(log, (
        at("tc/ingress", "lk-b0", storage_a="created", storage_b="created"),
        step("storage_scrub", map="storage_a", reason="tunnel", kept=True, where=SCRUB_RCV, same_skb=True),
        at("tc/ingress", "lk-t", storage_a="present", storage_b="absent", same_skb=True),
        at("cgroup_skb/ingress", storage_a="present", same_skb=True)))


# ---- BPF_F_SKB_KEEP_NETNS --------------------------------------------------------------------

def test_keep_netns_survives_a_veth_crossing():
    log = run("netns", ("keep_netns",), path="veth")
    created, scrub, kept, ingress, sock = expect(log, (
        at("tc/egress", "lk-a0", storage_a="created", storage_b="created"),
        step("scrub", xnet=True, where="veth", same_skb=True),
        step("storage_scrub", map="storage_a", reason="netns", kept=True, xnet=True, same_skb=True),
        at("tc/ingress", "lk-b0", ns="b", storage_a="present", storage_b="absent", same_skb=True),
        at("cgroup_skb/ingress", storage_a="present", storage_b="absent", same_skb=True)))
    assert sock["maps"]["storage_a"]["value"] == created["maps"]["storage_a"]["value"]


def test_keep_netns_survives_redirect_peer():
    log = run("netns", ("keep_netns",), path="redirect_peer")
    expect(log, (
        at("tc/ingress", "lk-h1", storage_a="created"),
        step("storage_scrub", map="storage_a", reason="netns", kept=True, xnet=False, where="skb_do_redirect",
             same_skb=True),
        at("tc/ingress", "lk-c0", storage_a="present", storage_b="absent", same_skb=True),
        at("cgroup_skb/ingress", storage_a="present", same_skb=True)))


def test_keep_netns_does_not_cover_forwarding_inside_one_netns():
    log = run("netns", ("keep_netns",), path="same_netns")
    expect(log, (
        at("tc/egress", "lk-a0", storage_a="created"),
        step("storage_scrub", map="storage_a", reason="forward", kept=False, xnet=False, same_skb=True),
        at("tc/ingress", "lk-a1", storage_a="absent", same_skb=True)))


@pytest.mark.parametrize("flags", [(), ("keep_tunnel",), ("clone",)], ids=["none", "keep_tunnel", "clone"])
def test_without_keep_netns_a_veth_crossing_drops_it(flags):
    log = run("netns", flags, path="veth")
    expect(log, (
        at("tc/egress", "lk-a0", storage_a="created"),
        step("storage_scrub", map="storage_a", reason="netns", kept=False, xnet=True, same_skb=True),
        at("tc/ingress", "lk-b0", storage_a="absent", same_skb=True)))
