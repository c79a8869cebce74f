"""The BPF metadata buffer in an skb extension (kernel patch 0011), one
test per rule, on real skbs in the lab VM: the verifier's refusals with
their messages, -ENOENT, create, copy-on-write for a clone, the buffer
kept across every kind of scrub, and the buffer beside skb local storage
on one skb. Programs: bpf/skb_ext.bpf.c; kernel/README.md states the rules.
"""

import struct
import time
from contextlib import ExitStack

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.errors import VerifierError
from labkit.guest.netns import NetNS
from labkit.runtime.packets import udp_frame

from .test_lifetime import INNER_B, TUNNEL_PATHS, dummy, send_raw, send_udp, tc, tunnel_pair, veth

RES = struct.Struct("<24q16QIIII")
ENOENT, EINVAL, E2BIG = 2, 22, 7
BUF_SIZE = 64  # CONFIG_BPF_SKB_EXT_SIZE in kernel/lab.config
SCRUB_FORWARD, SCRUB_NETNS, SCRUB_TUNNEL = 0, 1, 2  # enum skb_scrub_reason


def skb_ext(*programs):
    return BpfObject(obj_path("skb_ext"), programs=list(programs))


def res(obj):
    vals = RES.unpack(obj.bss().lookup(b"\0\0\0\0")[:RES.size])
    return {"v": vals[:24], "skb": vals[24:40]}


def setup(obj, **fields):
    """Set res.token, res.target or res.cow."""
    raw = bytearray(obj.bss().lookup(b"\0\0\0\0"))
    at = {"token": 0, "target": 4, "cow": 8}
    for name, value in fields.items():
        struct.pack_into("<I", raw, 40 * 8 + at[name], value)
    obj.bss().update(b"\0\0\0\0", bytes(raw))


def wait_for(obj, slot, timeout=5.0):
    deadline = time.monotonic() + timeout
    while res(obj)["v"][slot] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return res(obj)


def refused(program):
    with pytest.raises(VerifierError) as exc:
        skb_ext(program)
    return exc.value.log


# ---- the verifier ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tracing", "lsm"])
def test_create_is_refused_in_tracing_and_lsm_programs(kind):
    log = refused(f"bad_create_in_{kind}")
    assert "BPF_SKB_EXT_F_CREATE is not allowed in lsm/tracing programs" in log, log
    with skb_ext(f"ok_read_in_{kind}"):
        pass  # reading the buffer there is allowed


def test_flags_must_be_a_known_constant():
    log = refused("bad_flags_not_constant")
    assert "must be a known constant" in log, log


def test_a_slice_is_invalidated_by_bpf_clone_redirect():
    log = refused("bad_slice_after_clone")
    assert "invalid mem access 'scalar'" in log, log
    with skb_ext("ok_slice_before_clone"):
        pass


def test_a_slice_is_invalidated_by_reopening_with_create():
    log = refused("bad_slice_after_reopen")
    assert "invalid mem access 'scalar'" in log, log
    with skb_ext("ok_slice_after_reopen_without_create"):
        pass


# ---- the API on one skb ------------------------------------------------------------------


def test_enoent_without_a_buffer(token):
    with skb_ext("ext_enoent") as obj:
        obj.program("ext_enoent").test_run(udp_frame(token))
        v = res(obj)["v"]
    assert v[0] == -ENOENT, f"a read-only open of an skb without a buffer answered {v[0]}"
    assert v[1] == -EINVAL, f"reading the null dynptr answered {v[1]}"


def test_create_gives_a_zero_filled_writable_buffer_and_reopening_a_read_only_view(token):
    with skb_ext("ext_create", "ev_create", "ev_free") as obj:
        for p in ("ev_create", "ev_free"):
            obj.own(obj.program(p).attach())
        obj.program("ext_create").test_run(udp_frame(token))
        v = res(obj)["v"]
    assert v[0] == 0, f"create answered {v[0]}"
    assert v[1] == BUF_SIZE, f"size 0 gave a dynptr of {v[1]} bytes, not the buffer's {BUF_SIZE}"
    assert v[2] == 0, "the created dynptr is read-only"
    assert v[3] == 0, f"a new buffer is not zero-filled: {v[3]:#x} at its end"
    assert v[4] == 0, f"writing the created buffer answered {v[4]}"
    assert (v[5], v[6]) == (0, 1), f"reopened without the flag: {v[5]}, read-only {v[6]}"
    assert v[7] == 0x1234abcd5678ef01, f"the write did not reach the buffer: {v[7]:#x}"
    assert v[8] == -EINVAL, f"a write through the read-only dynptr answered {v[8]}"
    assert v[9] == 1, "a writable slice of the read-only dynptr was given"
    assert (v[10], v[11]) == (0, 0x1234abcd5678ef01), f"a second create changed the buffer: {v[10]}, {v[11]:#x}"
    assert (v[16], v[21]) == (1, 1), f"bpf_skb_ext events: {v[16]} created, {v[21]} freed (want one each)"


def test_size_and_flags_are_checked(token):
    with skb_ext("ext_sizes") as obj:
        obj.program("ext_sizes").test_run(udp_frame(token))
        v = res(obj)["v"]
    assert (v[0], v[1]) == (0, 16), f"size 16: {v[0]}, a dynptr of {v[1]} bytes"
    assert v[2] == -E2BIG, f"size 65 (past the buffer) answered {v[2]}"
    assert (v[3], v[4]) == (0, BUF_SIZE), f"size 64: {v[3]}, {v[4]} bytes"
    null = -EINVAL & 0xFFFFFFFF  # bpf_dynptr_size() of a null dynptr
    assert (v[5], v[6]) == (-EINVAL, null), f"unknown flag 2: {v[5]}, bpf_dynptr_size {v[6]} (want a null dynptr)"


# ---- clones --------------------------------------------------------------------------


def clone_run(token, cow):
    """ext_clone_orig on lo (test run in a fresh netns) clones to lk-dmy0,
    whose egress runs ext_clone_side while bpf_clone_redirect() runs."""
    with ExitStack() as st:
        obj = st.enter_context(skb_ext("ext_clone_orig", "ext_clone_side", "ev_copy"))
        obj.own(obj.program("ev_copy").attach())
        n = st.enter_context(NetNS())
        dummy(n, False)
        setup(obj, token=token, target=n.ifindex("lk-dmy0"), cow=int(cow))
        tc(obj, "ext_clone_side", n, "lk-dmy0", False)
        with n.enter():
            obj.program("ext_clone_orig").test_run(udp_frame(token))
        return res(obj)


def test_a_clone_shares_the_buffer(token):
    r = clone_run(token, cow=False)
    v = r["v"]
    assert v[0] == 1 and v[2] == 0, f"create {v[0]}, bpf_clone_redirect {v[2]}"
    assert v[4] == token, f"the clone reads {v[4]:#x}, not the original's {token:#x}"
    assert r["skb"][4] != r["skb"][0], "the clone's program ran on the original"
    assert v[3] == token, f"the original reads {v[3]:#x} after the clone"
    assert v[17] == 0, f"{v[17]} copies of the block, with nothing written after the clone"


def test_a_write_to_a_shared_buffer_copies_it(token):
    r = clone_run(token, cow=True)
    v = r["v"]
    assert v[4] == token, f"the clone reads {v[4]:#x} before writing"
    assert v[5] == 0 and v[6] == (~token & 0xFFFFFFFF), f"the clone's create {v[5]}, it then reads {v[6]:#x}"
    assert v[3] == token, f"the clone's write reached the original's buffer: {v[3]:#x}"
    assert v[17] == 1 and r["skb"][11] == r["skb"][4], \
        f"skb_ext_bpf_copy fired {v[17]} times (want once, for the clone)"


# ---- scrubs: the buffer is kept across every kind ------------------------------------


def kept(obj, token, what):
    r = wait_for(obj, 1)
    v = r["v"]
    assert v[0] == 1, f"{what}: the writer answered {v[0]}"
    assert v[1] != 0, f"{what}: the packet never reached the reader"
    assert v[1] == token, f"{what}: the reader sees {v[1]} instead of the token {token:#x}"
    assert r["skb"][1] == r["skb"][0], f"{what}: another skb reached the reader"
    return v


@pytest.mark.parametrize("same_netns", [True, False], ids=["forward", "netns"])
def test_kept_across_a_veth_scrub(token, same_netns):
    with ExitStack() as st:
        obj = st.enter_context(skb_ext("ext_write", "ext_read", "ev_scrub"))
        obj.own(obj.program("ev_scrub").attach())
        a = st.enter_context(NetNS())
        b = a if same_netns else st.enter_context(NetNS())
        veth(a, "lk-a0", b, "lk-b0")
        setup(obj, token=token)
        tc(obj, "ext_write", a, "lk-a0", False)
        tc(obj, "ext_read", b, "lk-b0", True)
        send_raw(a, "lk-a0", udp_frame(token))
        v = kept(obj, token, "veth " + ("inside one netns" if same_netns else "into another netns"))
    want = SCRUB_FORWARD if same_netns else SCRUB_NETNS
    assert (v[6], v[7]) == (1, want), f"the kernel kept it {v[6]} times, last for reason {v[7]} (want once, {want})"


@pytest.mark.parametrize("direction", ["encap", "decap"])
@pytest.mark.parametrize("kind", ["gre", "ipip", "vxlan", "geneve"])
def test_kept_across_a_tunnel(token, kind, direction):
    _, w_ns, w_dev, _, o_ns, o_dev, hook = TUNNEL_PATHS[direction]
    with ExitStack() as st:
        obj = st.enter_context(skb_ext("ext_write", "ext_read", "ev_scrub"))
        obj.own(obj.program("ev_scrub").attach())
        ns = dict(zip("ab", tunnel_pair(st, kind)))
        setup(obj, token=token)
        tc(obj, "ext_write", ns[w_ns], w_dev, hook == "tc/ingress")
        tc(obj, "ext_read", ns[o_ns], o_dev, hook == "tc/ingress")
        send_udp(ns["a"], INNER_B, token)
        v = kept(obj, token, f"{kind} {direction}")
    assert v[6] >= 1 and v[7] == SCRUB_TUNNEL, f"{kind} {direction}: last kept by a scrub for reason {v[7]}"


# ---- beside skb local storage -------------------------------------------------------


def test_both_extensions_on_one_skb(token):
    """Storage and buffer on one skb, cloned with bpf_clone_redirect(): the
    clone shares the block, so its storage is refused (the RFC's rule,
    unchanged) while it reads the buffer. The original then crosses a veth
    pair inside one netns: the forwarding scrub drops the storage (its map
    has no keep flag) and keeps the buffer."""
    with ExitStack() as st:
        obj = st.enter_context(skb_ext("both_write", "both_clone_side", "both_later"))
        n = st.enter_context(NetNS())
        dummy(n, False)
        veth(n, "lk-a0", n, "lk-a1")
        setup(obj, token=token, target=n.ifindex("lk-dmy0"))
        tc(obj, "both_write", n, "lk-a0", False)
        tc(obj, "both_clone_side", n, "lk-dmy0", False)
        tc(obj, "both_later", n, "lk-a1", True)
        send_raw(n, "lk-a0", udp_frame(token))
        v = wait_for(obj, 7)["v"]
    assert v[0] == 1 and v[2] == 0, f"buffer create {v[0]}, bpf_clone_redirect {v[2]}"
    assert (v[3], v[4]) == (-1, token), f"the clone: storage {v[3]} (want refused), buffer {v[4]:#x}"
    assert (v[6], v[7]) == (-1, token), \
        f"the original after a forwarding scrub: storage {v[6]} (want dropped), buffer {v[7]:#x} (want kept)"
