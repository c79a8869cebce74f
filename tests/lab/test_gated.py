"""Gated skb tracepoints (kernel patch 0012), one test per rule, on real
skbs in the lab VM: no skb_free for an skb nobody armed, skb_free for an
armed one (its side-stash entry reaped), skb_copy for its clone (the
entry copied), skb_scrub as it crosses into another netns (the mark and
the entry kept), and arming refused in tracing programs.
Programs: bpf/skb_ext.bpf.c.
"""

import time
from contextlib import ExitStack

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.errors import VerifierError
from labkit.guest.netns import NetNS
from labkit.runtime.packets import udp_frame

from .test_lifetime import dummy, send_raw, tc, veth
from .test_skb_ext import SCRUB_NETNS, res, setup

GATED = ("gated_free", "gated_copy", "gated_scrub")


def gated(*programs):
    obj = BpfObject(obj_path("skb_ext"), programs=[*programs, *GATED])
    for p in GATED:
        obj.own(obj.program(p).attach())
    return obj


def stash_keys(obj):
    """The skb addresses the side stash still holds."""
    m, keys, key = obj.map("gated_stash"), [], None
    while True:
        try:
            key = m.get_next_key(key, key_size=8)
        except OSError:
            return keys
        keys.append(int.from_bytes(key, "little"))


def settle(obj, slot, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while res(obj)["v"][slot] < want and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)
    return res(obj)


def crossing(token):
    """A frame out of lk-a0 into lk-b0 in another netns: gated_arm arms it
    and stashes the token at lk-a0 egress, gated_later looks it up at
    lk-b0 ingress."""
    with ExitStack() as st:
        obj = st.enter_context(gated("gated_arm", "gated_later"))
        a, b = st.enter_context(NetNS()), st.enter_context(NetNS())
        veth(a, "lk-a0", b, "lk-b0")
        setup(obj, token=token, cow=1)
        tc(obj, "gated_arm", a, "lk-a0", False)
        tc(obj, "gated_later", b, "lk-b0", True)
        send_raw(a, "lk-a0", udp_frame(token))
        return settle(obj, 9, 1), stash_keys(obj)


def test_no_skb_free_event_for_an_unarmed_skb(token):
    with ExitStack() as st:
        obj = st.enter_context(gated("gated_later"))
        a, b = st.enter_context(NetNS()), st.enter_context(NetNS())
        veth(a, "lk-a0", b, "lk-b0")
        setup(obj, token=token)
        tc(obj, "gated_later", b, "lk-b0", True)
        for _ in range(5):
            send_raw(a, "lk-a0", udp_frame(token))
        r = settle(obj, 2, 1)
    v = r["v"]
    assert v[2] == -1, f"the packet did not arrive, or has a stash entry: {v[2]}"
    assert (v[8], v[10], v[12]) == (0, 0, 0), \
        f"gated tracepoints fired for skbs nobody armed: {v[8]} skb_free, {v[10]} skb_copy, {v[12]} skb_scrub"


def test_an_armed_skb_is_scrubbed_carried_and_reaped(token):
    r, left = crossing(token)
    v, skb = r["v"], r["skb"]
    assert v[0] == 0, f"bpf_trace_skb answered {v[0]}"
    assert v[12] == 1 and v[13] == SCRUB_NETNS and skb[12] == skb[0], \
        f"skb_scrub fired {v[12]} times, reason {v[13]} (want once, netns, for the armed skb)"
    assert v[2] and v[2] == token and skb[2] == skb[0], f"the stash entry at the other side: {v[2]}"
    assert v[9] == 1, f"skb_free fired {v[9]} times for the armed skb (want once)"
    assert v[8] == v[9], f"skb_free fired for {v[8] - v[9]} skbs that nobody armed"
    assert not left, f"the stash still holds {len(left)} entries: nothing reaped them"


def test_a_clone_of_an_armed_skb_fires_skb_copy_and_gets_the_entry(token):
    with ExitStack() as st:
        obj = st.enter_context(gated("gated_arm", "gated_later"))
        n = st.enter_context(NetNS())
        dummy(n, False)
        veth(n, "lk-a0", n, "lk-a1")
        setup(obj, token=token, cow=1, target=n.ifindex("lk-dmy0"))
        tc(obj, "gated_arm", n, "lk-a0", False)
        tc(obj, "gated_later", n, "lk-dmy0", False)
        send_raw(n, "lk-a0", udp_frame(token))
        r = settle(obj, 8, 2)
        left = stash_keys(obj)
    v, skb = r["v"], r["skb"]
    assert (v[0], v[1]) == (0, 0), f"bpf_trace_skb {v[0]}, bpf_clone_redirect {v[1]}"
    assert v[10] == 1 and skb[10] == skb[0] and skb[11] == skb[2], \
        f"skb_copy fired {v[10]} times (want once, from the armed skb to its clone)"
    assert v[2] == token and skb[2] != skb[0], f"the clone's stash entry: {v[2]}"
    assert v[8] == 2, f"skb_free fired {v[8]} times (want twice: the clone and the original)"
    assert not left, f"the stash still holds {len(left)} entries"


def test_arming_is_refused_in_tracing_programs():
    with pytest.raises(VerifierError) as exc:
        BpfObject(obj_path("skb_ext"), programs=["bad_arm_in_tracing"])
    assert "bpf_trace_skb" in exc.value.log, exc.value.log
