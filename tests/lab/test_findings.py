"""Kernel truth: the faults a review of the storage series found, one test
each (named after the finding), on real skbs in the lab VM.

On the debug kernel (``LABKIT_KERNEL_FLAVOUR=debug``) a KASAN, lockdep or
RCU report, a WARN or a leak fails the test that caused it
(tests/lab/conftest.py). Programs: bpf/findings.bpf.c.
"""

import ctypes
import os
import socket
import struct
import time
from contextlib import ExitStack

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.errors import VerifierError
from labkit.guest.netns import NetNS
from labkit.runtime.packets import udp_frame

from .test_inline import implementation  # noqa: F401  (fixture: inline, plain)
from .test_lifetime import bridged, dummy, send_raw, tc

RES = struct.Struct("<8q32QIII")
SKB_EXT_BRIDGE_NF = 0


def findings(*programs):
    return BpfObject(obj_path("findings"), programs=list(programs))


def res(obj):
    raw = obj.bss().lookup(b"\0\0\0\0")
    vals = RES.unpack(raw[:RES.size])
    return {"v": vals[:8], "addr": vals[8:40], "n": vals[40], "spin": vals[41], "target": vals[42]}


def set_res(obj, **fields):
    raw = bytearray(obj.bss().lookup(b"\0\0\0\0"))
    offsets = {"n": 8 * 8 + 32 * 8, "spin": 8 * 8 + 32 * 8 + 4, "target": 8 * 8 + 32 * 8 + 8}
    for name, value in fields.items():
        struct.pack_into("<I", raw, offsets[name], value)
    obj.bss().update(b"\0\0\0\0", bytes(raw))


def map_ids():
    """The ids of every BPF map alive in the guest (bpf_map_get_next_id)."""
    from labkit.bpf import ffi

    lib = ffi.lib()
    ids, cur, nxt = [], ctypes.c_uint32(0), ctypes.c_uint32(0)
    while lib.bpf_map_get_next_id(cur, ctypes.byref(nxt)) == 0:
        ids.append(nxt.value)
        cur.value = nxt.value
    return ids


def wait_gone(map_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if map_id not in map_ids():
            return True
        time.sleep(0.1)
    return False


def hold_on_dummy(n):
    """lk-dmy0 in n, whose plug qdisc holds what is sent out of it. Its clsact
    is made here, so it stays when a test's program goes: deleting clsact
    resets the device's qdiscs, which frees the held packets."""
    dummy(n, True)
    n.run("tc", "qdisc", "add", "dev", "lk-dmy0", "clsact")


def still_held(n) -> bool:
    """Whether lk-dmy0's plug qdisc still holds a packet."""
    return "backlog 0b 0p" not in n.run("tc", "-s", "qdisc", "show", "dev", "lk-dmy0", "root")


def refused(prog, *others):
    """The verifier's message when prog is refused, else None (it loaded)."""
    try:
        with findings(prog, *others):
            return None
    except VerifierError as exc:
        return exc.log


# ---- 1: the inline element and map references ---------------------------------------


def test_f1_an_element_does_not_hold_its_inner_map(implementation, token):  # noqa: F811
    """An skb storage map as the inner map of a map-in-map: a packet held in
    a plug qdisc carries an element created through it. Removed from the
    outer map, with no fd left, the inner map is freed at once: the element
    holds no reference to it (today's inline element took bpf_map_inc() per
    packet, which a program holding an inner map whose count reached zero
    revives; the map stayed alive until the packet went). The packet's
    release afterwards must leave no splat on the debug kernel."""
    with ExitStack() as st:
        n = st.enter_context(NetNS())
        hold_on_dummy(n)
        with findings("inner_create") as obj:
            inner_id = map_id_of(obj.map("inner").fd)
            # The object's own fd on the inner map goes now (dup2 keeps the
            # number valid for libbpf): the outer map's slot is its last holder.
            os.dup2(obj.map("outer").fd, obj.map("inner").fd)
            tc(obj, "inner_create", n, "lk-dmy0", False)
            send_raw(n, "lk-dmy0", udp_frame(token))
            r = res(obj)["v"]
            assert (r[1], r[0]) == (1, 1), f"the program found the inner map: {r[1]}, created: {r[0]}"
            obj.map("outer").delete(b"\0\0\0\0")
            gone = wait_gone(inner_id)
            held = still_held(n)
        n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")  # frees the held packet
        time.sleep(0.5)
    assert held, "the packet was not held while the inner map went"
    assert gone, "the inner map stayed alive while a held packet carried an element of it"


def map_id_of(fd):
    from labkit.bpf import ffi

    class Info(ctypes.Structure):
        _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("rest", ctypes.c_uint8 * 256)]

    info = Info()
    size = ctypes.c_uint32(ctypes.sizeof(info))
    rc = ffi.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
    assert rc == 0, f"bpf_obj_get_info_by_fd: {rc}"
    return info.id


# ---- 2 and 3: storage tracepoint programs may not call the storage kfuncs -----------


def test_f2_delete_from_a_free_event_program_is_refused():
    """A tp_btf/skb_storage_free program that deletes the element being
    deleted made the outer delete put a NULL map (an oops on today's
    series). Programs on the storage's own tracepoints may not call the
    storage kfuncs, and the verifier says so."""
    log = refused("free_reenter", "create_delete")
    assert log is not None, "a skb_storage_free program that deletes storage loaded"
    assert "bpf_skb_storage_delete" in log and "not allowed" in log, log


@pytest.mark.parametrize("prog", ["scrub_reenter", "clone_reenter"])
def test_f3_create_from_a_scrub_or_clone_event_program_is_refused(prog):
    """Creating storage from inside a scrub or clone event wiped or
    duplicated elements mid-copy (a leaked map reference, an orphaned
    storage). The verifier refuses the storage kfuncs there."""
    log = refused(prog)
    assert log is not None, f"{prog} (a storage tracepoint program creating storage) loaded"
    assert "bpf_skb_storage_get" in log and "not allowed" in log, log


def test_f3_the_tracepoints_still_take_plain_observers():
    assert refused("free_count") is None


# ---- 4: both implementations, the same rules ----------------------------------------


def test_f4_no_alias_after_delete(implementation, token):  # noqa: F811
    """p = get(A); delete(A); q = get(B); *p = 1 leaves *q alone, and A
    created again is a new, zero-filled element (today's inline slot was
    handed to B at once: *q read 1)."""
    with findings("alias_after_delete") as obj:
        obj.program("alias_after_delete").test_run(udp_frame(token))
        r = res(obj)["v"]
    assert r[0] == 0, f"delete(A) returned {r[0]}"
    assert r[2] == 0, "q = get(B) returned the deleted element's memory"
    assert r[1] == 5, f"writing through the stale pointer changed B's value to {r[1]}"
    assert r[3] == 0, f"A created again showed the old element's data ({r[3]})"


@pytest.mark.parametrize("size", ["small", "big"])
def test_f4_map_freed_with_its_last_reference_while_a_packet_holds_its_element(
        implementation, token, size):  # noqa: F811
    """A packet held in a plug qdisc carries an element of the map; once
    the program and every fd are gone the map is freed at once, as for
    any local storage (today an inline element held its map until the
    packet was freed)."""
    with ExitStack() as st:
        n = st.enter_context(NetNS())
        hold_on_dummy(n)
        with findings("tag_both") as obj:
            map_id = map_id_of(obj.map("small_a" if size == "small" else "big_a").fd)
            tc(obj, "tag_both", n, "lk-dmy0", False)
            send_raw(n, "lk-dmy0", udp_frame(token))
            assert res(obj)["v"][:2] == (1, 1), f"the held packet got no elements: {res(obj)['v'][:2]}"
        gone = wait_gone(map_id)
        held = still_held(n)
        n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")  # frees the held packet
    assert held, "the packet was not held while the map went"
    assert gone, "the map stayed alive while a held packet carried its element"


# ---- 5: a shared skb -------------------------------------------------------------------


def read_paged_udp(n, token, peek):
    """In n, one 20000-byte datagram over lo to a UDP socket that reads it
    (peeking at it first when peek). A paged skb: skb_copy_datagram_iter()
    copies it through the skb_copy_datagram_iovec tracepoint, which a
    linear one skips."""
    n.ip("link", "set", "lo", "up")
    with n.enter():
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        tx.sendto(token.to_bytes(4, "little") * 5000, rx.getsockname())
        if peek:
            rx.recv(65536, socket.MSG_PEEK)
        rx.recv(65536)


def test_f5_storage_refused_on_a_shared_skb(token):
    """A UDP skb being peeked is held by the socket queue and the reader
    (skb_shared()): a tracing program there must be refused storage, as on
    any skb two holders can reach; the reader that dequeues it owns it and
    may create. Today only the extension's refcount was looked at."""
    with ExitStack() as st:
        obj = st.enter_context(findings("peek_create"))
        obj.own(obj.program("peek_create").attach())
        read_paged_udp(st.enter_context(NetNS()), token, peek=True)
        r = res(obj)
    assert r["n"] == 2, f"the tracepoint program ran {r['n']} times"
    assert r["v"][0] == 0, "storage was created on a peeked (shared) skb"
    assert r["v"][1] == 1, "storage was refused on the skb the reader owns"


# ---- 6: a clone sharing a block with another extension only -------------------------


def test_f6_clone_sharing_only_another_extension_may_get_storage(token):
    """A bridged packet with br_netfilter carries the bridge's extension.
    Cloned at the bridge's ingress, it shares that block, which holds no
    BPF storage: as in the RFC the original may still create (the block is
    copied on write); today it was refused because the block was shared."""
    with ExitStack() as st:
        obj = st.enter_context(findings("clone_then_create"))
        n = st.enter_context(NetNS())
        bridged(n, True)
        set_res(obj, target=n.ifindex("lk-dmy0"))
        tc(obj, "clone_then_create", n, "lk-br0", True)
        frame = udp_frame(token, src="10.97.0.2", dst="10.97.0.1", dport=9,
                          src_mac=n.mac("lk-s0"), dst_mac=n.mac("lk-br0"))
        send_raw(n, "lk-s0", frame)
        deadline = time.monotonic() + 5
        while res(obj)["n"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = res(obj)["v"]
        n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")
    assert r[0] == 1 << SKB_EXT_BRIDGE_NF, f"the packet's extensions were {r[0]:#x}, not the bridge's alone"
    assert r[1] == 0, f"bpf_clone_redirect answered {r[1]}"
    assert r[2] == 1, "storage was refused on a skb whose shared block holds no BPF storage"


# ---- 7: element memory --------------------------------------------------------------------


def test_f7_a_freed_skbs_element_is_not_reused_before_a_grace_period(token):
    """Each BPF_PROG_TEST_RUN makes an skb, creates an element and frees
    the skb. The element must be freed after an RCU grace period, as sk
    storage's are, because the block is destroyed at once: with bpf_ma
    (today) the next packet got the very same memory nearly every time."""
    os.sched_setaffinity(0, {0})
    try:
        with findings("record_addr") as obj:
            for _ in range(20):
                obj.program("record_addr").test_run(udp_frame(token))
            r = res(obj)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
    addrs = r["addr"][:r["n"]]
    assert len(addrs) == 20
    reused = sum(1 for a, b in zip(addrs, addrs[1:]) if a == b)
    assert reused <= 4, f"{reused} of 19 packets got the previous packet's element memory at once"


# ---- 8: the free tracepoint ------------------------------------------------------------


def test_f8_free_event_skb_is_nullable():
    """skb_storage_free passes a NULL skb when a block is released: a
    program that reads it without a check is refused, one that checks loads."""
    log = refused("free_deref")
    assert log is not None, "a skb_storage_free program dereferencing a maybe-NULL skb loaded"
    assert "invalid mem access" in log or "NULL" in log or "null" in log, log
    assert refused("free_count") is None


@pytest.mark.parametrize("size", ["small", "big"])
def test_f8_map_free_reports_the_elements_of_live_skbs(implementation, token, size):  # noqa: F811
    """The map freed while a held packet carries its element: the element
    goes with the map, and the free event says so (today: no event)."""
    with ExitStack() as st:
        tracer = st.enter_context(findings("free_count"))
        tracer.own(tracer.program("free_count").attach())
        n = st.enter_context(NetNS())
        hold_on_dummy(n)
        name = "small_a" if size == "small" else "big_a"
        with findings("tag_both") as obj:
            map_id = map_id_of(obj.map(name).fd)
            tc(obj, "tag_both", n, "lk-dmy0", False)
            send_raw(n, "lk-dmy0", udp_frame(token))
            assert res(obj)["v"][:2] == (1, 1), f"the held packet got no elements: {res(obj)['v'][:2]}"
        assert wait_gone(map_id), "the map was not freed"
        time.sleep(0.5)  # the map is freed from a work item after its id goes
        r = res(tracer)
        # free_count records the map's name (8 bytes) and bit 63 when the event names an skb
        want = int.from_bytes(name.encode().ljust(8, b"\0"), "little")
        freed = [a for a in r["addr"][:r["n"]] if a == want]
        held = still_held(n)
        n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")
    assert held, "the packet was not held while the map went"
    assert len(freed) == 1, (f"{len(freed)} free events (no skb) for the element of the freed map {name} on a "
                             f"held skb; events (name | skb set << 63): {[hex(a) for a in r['addr'][:r['n']]]}")


# ---- 9: the plain design is the RFC's -----------------------------------------------


def test_f9_plain_chunk_is_the_storage_pointer_alone(token):
    """With kernel.bpf_skb_storage_inline=0 the chunk is the RFC's: one
    pointer (one 8-byte unit after the block header), not the optimised
    design's inline slot."""
    from .test_inline import knob

    with knob(0), findings("chunk_size") as obj:
        obj.program("chunk_size").test_run(udp_frame(token))
        created, chunks, offset = res(obj)["v"][:3]
    assert created == 1
    assert chunks - offset == 1, f"the storage chunk is {chunks - offset} units of 8 bytes"



# ---- 10: the verifier's context path --------------------------------------------------


def test_f10_a_walked_skb_pointer_takes_the_context_path():
    """Patch 0001 lets a trusted struct sk_buff pointer through to the BTF
    checks; a pointer the program walked to (skb->next) is not trusted and
    must stay on the context path, refused there whatever the kfunc's flags
    (today it reached the BTF path, where only KF_TRUSTED_ARGS stopped it)."""
    log = refused("walked_pointer")
    assert log is not None, "a walked skb pointer was accepted by bpf_skb_storage_get"
    assert "expected pointer to ctx" in log, log


# ---- 11: crossings with no scrub of their own -----------------------------------------


def test_f11_vxlan_local_bypass_crosses_with_no_scrub(token):
    """Two VXLAN devices whose underlay addresses are both on this host: the
    sender hands the inner packet to the receiving device directly
    (vxlan_encap_bypass()), with no scrub, so an element of a map with no
    keep flag arrives with it (kernel/README.md says so, rather than
    "VXLAN scrubs")."""
    with ExitStack() as st:
        obj = st.enter_context(findings("tag_both", "observe_small"))
        n = st.enter_context(NetNS())
        n.ip("link", "set", "lo", "up")
        n.ip("link", "add", "lk-u0", "type", "dummy")
        n.ip("addr", "add", "10.96.0.1/24", "dev", "lk-u0")
        n.ip("addr", "add", "10.96.0.2/24", "dev", "lk-u0")
        n.ip("link", "set", "lk-u0", "up")
        # One VNI, two UDP ports (one netns allows a VNI once per port): the
        # sender listens on 4789 and sends to 4790, where the receiver listens.
        n.ip("link", "add", "lk-vx0", "type", "vxlan", "id", "42", "local", "10.96.0.1", "dstport", "4789")
        n.ip("link", "add", "lk-vx1", "type", "vxlan", "id", "42", "local", "10.96.0.2", "dstport", "4790")
        n.ip("addr", "add", "10.97.0.1/24", "dev", "lk-vx0")
        n.ip("link", "set", "lk-vx0", "up")
        n.run("bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "lk-vx0", "dst", "10.96.0.2", "port", "4790")
        # lk-vx1 is the receiving end: it only needs to be up (no route back)
        n.ip("link", "set", "lk-vx1", "up")
        n.ip("neigh", "replace", "10.97.0.2", "lladdr", n.mac("lk-vx1"), "dev", "lk-vx0")
        tc(obj, "tag_both", n, "lk-vx0", False)
        tc(obj, "observe_small", n, "lk-vx1", True)
        with n.enter():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(token.to_bytes(4, "little") * 8, ("10.97.0.2", 9))
        deadline = time.monotonic() + 5
        while res(obj)["v"][5] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        r = res(obj)["v"]
    assert r[0] >= 1, "the sending VXLAN device's tc egress created no element"
    assert r[5] >= 1, "the packet did not reach the receiving VXLAN device"
    assert r[4] == 1, f"the element did not cross the local bypass (read {r[4]})"


# ---- found by the debug tier: a stateless UDP skb ---------------------------------------


def test_storage_made_on_a_dequeued_udp_skb_goes_with_it(implementation, token):  # noqa: F811
    """UDP drops a queued skb's extensions and marks it stateless; the
    reader frees it with __consume_stateless_skb(), which skips the head
    state. Storage a tracing program creates while the reader copies the
    skb must still go with it: its free event comes when recv() returns.
    kmemleak on the debug kernel found the block leaked instead (with its
    bpf_local_storage in the plain design, the element staying in the map
    until map free)."""
    want = int.from_bytes(b"small_a\0", "little")
    with ExitStack() as st:
        tracer = st.enter_context(findings("free_count"))
        tracer.own(tracer.program("free_count").attach())
        obj = st.enter_context(findings("peek_create"))
        obj.own(obj.program("peek_create").attach())
        read_paged_udp(st.enter_context(NetNS()), token, peek=False)
        time.sleep(0.2)
        created, t = res(obj)["v"][0], res(tracer)
        # read before the map goes: map free reports a leaked element too
    freed = [a for a in t["addr"][:t["n"]] if a == want]
    assert created == 1, "the reader's copy created no storage"
    assert len(freed) == 1, (f"{len(freed)} free events for the element when recv() freed the skb "
                             f"(events: {[hex(a) for a in t['addr'][:t['n']]]})")
