"""Kernel truth, second read: the faults a second review of the storage
series found (N1-N5), one test each, on real skbs in the lab VM. Each
failed on the series before its fix (kernel/README.md says how).

The debug kernel's half of N3 (KASAN sees a read of a parked spare block)
is in test_zz_splat_scan.py, which only the debug kernel collects.
Programs: bpf/second_read.bpf.c.
"""

import os
import struct
import time
from contextlib import ExitStack, contextmanager

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.errors import VerifierError
from labkit.guest.netns import NetNS
from labkit.runtime.packets import udp_frame

from .test_findings import hold_on_dummy, map_id_of, still_held, wait_gone
from .test_inline import KNOB, TRACEFS, implementation, knob  # noqa: F401  (fixture: inline, plain)
from .test_lifetime import dummy, send_raw, tc, veth

RES = struct.Struct("<8q32QIIII")
BPF_F_TEST_STATE_FREQ = 1 << 3
MARK_OFFSET = 8  # struct __sk_buff: len, pkt_type, mark


def second_read(*programs, **kw):
    return BpfObject(obj_path("second_read"), programs=list(programs), **kw)


def res(obj):
    vals = RES.unpack(obj.bss().lookup(b"\0\0\0\0")[:RES.size])
    return {"v": vals[:8], "addr": vals[8:40], "n": vals[40], "len": vals[41]}


def set_res(obj, **fields):
    """Set res.len, res.target or res.token."""
    raw = bytearray(obj.bss().lookup(b"\0\0\0\0"))
    at = {"len": 4, "target": 8, "token": 12}
    for name, value in fields.items():
        struct.pack_into("<I", raw, 8 * 8 + 32 * 8 + at[name], value)
    obj.bss().update(b"\0\0\0\0", bytes(raw))


def set_len(obj, length):
    set_res(obj, len=length)


# ---- N1: tracing programs only where the tracepoint owns the skb --------------------


@pytest.mark.parametrize("prog", ["xmit_create", "enqueue_create"])
def test_n1_storage_on_an_skb_the_tracepoint_no_longer_owns_is_refused(prog, token):
    """net_dev_xmit fires after the driver took the skb (dummy has freed it
    by then), qdisc_enqueue after the qdisc may have handed it to another
    CPU: a program there that creates storage writes into a freed skb
    (on the debug kernel: BUG: KASAN: slab-use-after-free in
    bpf_skb_storage_get). The verifier must refuse the kfuncs there."""
    try:
        obj = second_read(prog)
    except VerifierError as exc:
        assert "bpf_skb_storage_get" in exc.log and "not allowed" in exc.log, exc.log
        return
    with ExitStack() as st:
        st.enter_context(obj)
        n = st.enter_context(NetNS())
        dummy(n, False)
        n.run("tc", "qdisc", "add", "dev", "lk-dmy0", "root", "pfifo")  # so that qdisc_enqueue fires
        frame = udp_frame(token)
        set_len(obj, len(frame))
        obj.own(obj.program(prog).attach())
        for _ in range(10):
            send_raw(n, "lk-dmy0", frame)
        made = res(obj)["v"][0]
    pytest.fail(f"{prog} loaded: it created storage {made} times on skbs its tracepoint does not own")


def test_n1_tracepoints_that_own_their_skb_may_create(token):
    """net_dev_queue and net_dev_start_xmit (the skb is the sender's until
    the driver takes it) and netif_receive_skb (the receiver's): programs
    there may create storage, on a frame sent through a veth pair."""
    progs = ["queue_create", "start_xmit_create", "receive_create"]
    with ExitStack() as st:
        obj = st.enter_context(second_read(*progs))
        n = st.enter_context(NetNS())
        veth(n, "lk-a0", n, "lk-a1")
        frame = udp_frame(token, src_mac=n.mac("lk-a0"), dst_mac=n.mac("lk-a1"))
        set_len(obj, len(frame))
        for p in progs:
            obj.own(obj.program(p).attach())
        send_raw(n, "lk-a0", frame)
        deadline = time.monotonic() + 5
        while res(obj)["v"][3] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        v = res(obj)["v"]
    assert v[1] == 1, f"net_dev_queue: created {v[1]} times"
    assert v[2] == 1, f"net_dev_start_xmit: created {v[2]} times"
    assert v[3] == 1, f"netif_receive_skb: created {v[3]} times"


# ---- N2: a call site reached with F_CREATE is never an inlined lookup ---------------


def test_n2_a_call_reached_with_create_is_not_inlined_as_a_lookup(implementation, token):  # noqa: F811
    """One call site, flags F_CREATE when the mark is 0x1234 and 0 otherwise;
    the verifier keeps a state at every branch (BPF_F_TEST_STATE_FREQ). On
    the series before the fix the F_CREATE path was pruned against the
    flags-0 one (R5 was not precise), the call became the inlined lookup,
    and a packet with the mark got NULL and no element."""
    with second_read("create_by_mark", prog_flags={"create_by_mark": BPF_F_TEST_STATE_FREQ}) as obj:
        prog = obj.program("create_by_mark")
        ctx = bytearray(MARK_OFFSET + 4)
        struct.pack_into("<I", ctx, MARK_OFFSET, 0x1234)
        created, _, _ = prog.test_run(udp_frame(token), ctx=bytes(ctx))
        looked_up, _, _ = prog.test_run(udp_frame(token), ctx=bytes(MARK_OFFSET + 4))
    assert created == 1, f"{implementation}: the F_CREATE path returned no element (inlined as a lookup)"
    assert looked_up == 0, f"{implementation}: the flags-0 path on a fresh skb returned an element"


# ---- N3: a spare block goes round without the slab ----------------------------------


def kmem_events(addr):
    """A context manager: the kmem_cache_alloc/free events for the object at addr while it is open;
    it yields a function returning the trace's lines."""
    def write(path, text):
        fd = os.open(os.path.join(TRACEFS, path), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    @contextmanager
    def events():
        if not os.path.isdir(os.path.join(TRACEFS, "events")):
            os.system(f"mount -t tracefs nodev {TRACEFS}")
        names = ["kmem/kmem_cache_alloc", "kmem/kmem_cache_free"]
        write("trace", "")
        try:
            for e in names:
                write(f"events/{e}/filter", f"ptr == {addr:#x}")
                write(f"events/{e}/enable", "1")
            yield lambda: [ln for ln in open(os.path.join(TRACEFS, "trace")) if not ln.startswith("#")]
        finally:
            for e in names:
                write(f"events/{e}/enable", "0")
                write(f"events/{e}/filter", "0")
            write("trace", "")
    return events()


def test_n3_a_freed_block_is_parked_and_taken_again_without_the_slab(token):
    """With the element in the block (inline), the block of an skb freed on
    a CPU comes back a grace period later as that CPU's spare, and the next
    create there takes it: the same address, with no kmem_cache_alloc or
    kmem_cache_free of it in between. This is why KASAN never saw a stale
    access to a block: it was never freed (N3; on the debug kernel
    test_zz_splat_scan.py shows a parked block is now poisoned)."""
    assert open(KNOB).read().strip() == "1"
    os.sched_setaffinity(0, {0})
    try:
        with second_read("record_block") as obj:
            prog = obj.program("record_block")
            assert prog.test_run(udp_frame(token))[0] == 1
            reused = 0
            for _ in range(5):
                time.sleep(0.5)  # a grace period (or a few, on a loaded host): the block is back among the spares
                before = res(obj)["addr"][res(obj)["n"] - 1]
                with kmem_events(before) as lines:
                    assert prog.test_run(udp_frame(token))[0] == 1
                    seen = lines()
                after = res(obj)["addr"][res(obj)["n"] - 1]
                assert not seen or after != before, f"the block went through the slab: {seen}"
                reused += after == before
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
    assert reused >= 3, f"{reused} of 5 creates took the previous packet's block from the spares"


# ---- N5: the free event's owner may be NULL ------------------------------------------


def test_n5_a_map_free_event_with_no_owner_is_seen(implementation, token):  # noqa: F811
    """A map freed while a held packet carries its element: the event names
    no owner when the element is kept in the block (inline), a storage when
    it is in one (plain). Before the fix the verifier took owner for
    non-NULL and dropped a program's `if (!owner)` branch: it counted 0."""
    with ExitStack() as st:
        tracer = st.enter_context(second_read("free_owner"))
        tracer.own(tracer.program("free_owner").attach())
        n = st.enter_context(NetNS())
        hold_on_dummy(n)
        with second_read("tag") as obj:
            map_id = map_id_of(obj.map("small_a").fd)
            tc(obj, "tag", n, "lk-dmy0", False)
            send_raw(n, "lk-dmy0", udp_frame(token))
            assert res(obj)["v"][6] == 1, "the held packet got no element"
        assert wait_gone(map_id), "the map was not freed"
        time.sleep(0.5)  # the map is freed from a work item after its id goes
        v = res(tracer)["v"]
        held = still_held(n)
        n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")
    assert held, "the packet was not held while the map went"
    want = (1, 0) if implementation == "inline" else (0, 1)
    assert (v[4], v[5]) == want, (f"{implementation}: free events with no owner {v[4]}, with one {v[5]}; "
                                  f"want {want}")


# ---- N4: the plain design allocates, sizes and copies as the RFC ----------------------

SKB_EXT_BPF_ELEM_NONE, SKB_EXT_BPF_ELEM_USED = 0, 2  # include/net/bpf_skb_storage.h (patch 0008)
ELEM_AREA = 128  # SKB_EXT_BPF_ELEM_SIZE: a block with an element area is larger than that


def object_size(cache):
    """The object size of a slab cache (SLUB's sysfs)."""
    with open(f"/sys/kernel/slab/{cache}/object_size") as fh:
        return int(fh.read())


def allocs(obj):
    raw = obj.section(".data.allocs").lookup(b"\0\0\0\0")
    n = struct.unpack_from("<I", raw, 64 * 8 + 64 * 4)[0]
    ptrs = struct.unpack_from("<64Q", raw, 0)
    sizes = struct.unpack_from("<64I", raw, 64 * 8)
    return dict(zip(ptrs[:n], sizes[:n]))


def arm(obj, on):
    m = obj.section(".data.allocs")
    raw = bytearray(m.lookup(b"\0\0\0\0"))
    struct.pack_into("<I", raw, 64 * 8 + 64 * 4 + 4, int(on))
    m.update(b"\0\0\0\0", bytes(raw))


def test_n4_the_plain_design_allocates_plain_blocks(token):
    """With kernel.bpf_skb_storage_inline=0 the extension block a create
    allocates is the RFC's: the storage chunk and nothing more. Before the
    fix every block had the element area (the lab's config then: 232-byte
    objects, not 48; with the metadata buffer and the gate mark of patches
    0011 and 0012 in every block: 312, not 128)."""
    os.sched_setaffinity(0, {0})
    try:
        with knob(0), second_read("alloc_seen", "record_block") as obj:
            obj.own(obj.program("alloc_seen").attach())
            arm(obj, True)
            assert obj.program("record_block").test_run(udp_frame(token))[0] == 1
            arm(obj, False)
            block = res(obj)["addr"][0]
            seen = allocs(obj)
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count())))
    assert block in seen, f"the block {block:#x} was not allocated from a slab cache during the create"
    plain, with_area = object_size("skbuff_ext_cache"), object_size("skbuff_ext_bpf_cache")
    assert with_area >= plain + ELEM_AREA, f"the caches: plain {plain}, with an element area {with_area} bytes"
    assert seen[block] == plain, (f"with the knob at 0 the block is a {seen[block]}-byte object, not the plain "
                                  f"{plain} bytes: it has room for an element ({ELEM_AREA} bytes), which the "
                                  "plain design has not")


@pytest.mark.parametrize("at_crossing", [1, 0], ids=["knob-1", "knob-0"])
def test_n4_copies_follow_the_knob(token, at_crossing):
    """An element kept in the block (created with the knob at 1) on a map
    with BPF_F_SKB_KEEP_NETNS and BPF_F_CLONE, held in a plug qdisc while
    the knob is set to at_crossing, then sent into another namespace (the
    scrub copies it to a new block) and cloned there (the clone gets its
    own copy). With the knob at 0 both copies are the plain design's: a
    block of the plain size with the element in its bpf_local_storage.
    Before the fix they were kept in the block whatever the knob said."""
    with ExitStack() as st:
        st.enter_context(knob(1))
        obj = st.enter_context(second_read("keep_create", "keep_probe", "keep_clone_seen"))
        n1, n2 = st.enter_context(NetNS()), st.enter_context(NetNS())
        veth(n1, "lk-a0", n2, "lk-a1")
        n1.run("tc", "qdisc", "add", "dev", "lk-a0", "root", "plug", "limit", "1000000")
        dummy(n2, False)
        n2.run("tc", "qdisc", "add", "dev", "lk-dmy0", "clsact")
        set_res(obj, target=n2.ifindex("lk-dmy0"), token=token)
        tc(obj, "keep_create", n1, "lk-a0", False)
        tc(obj, "keep_probe", n2, "lk-a1", True)
        tc(obj, "keep_clone_seen", n2, "lk-dmy0", False)
        send_raw(n1, "lk-a0", udp_frame(token, src_mac=n1.mac("lk-a0"), dst_mac=n2.mac("lk-a1")))
        assert res(obj)["v"][0] == 1, "no element was created at lk-a0's egress"
        st.enter_context(knob(at_crossing))
        n1.run("tc", "qdisc", "change", "dev", "lk-a0", "root", "plug", "release_indefinite")
        deadline = time.monotonic() + 5
        while res(obj)["v"][7] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        v = res(obj)["v"]
    assert v[3] == token, f"the element did not cross into the other namespace with its value ({v[3]})"
    assert v[4] == 0, f"bpf_clone_redirect answered {v[4]}"
    assert v[7] == token, f"the clone has no copy of the element with its value ({v[7]})"
    want = (SKB_EXT_BPF_ELEM_USED, 0) if at_crossing else (SKB_EXT_BPF_ELEM_NONE, 1)
    what = "kept in the block" if at_crossing else "in a plain block's bpf_local_storage"
    assert (v[1], v[2]) == want, (f"knob {at_crossing}: the scrub's copy has bpf_elem {v[1]}, storage {v[2]}; "
                                  f"want {want} ({what})")
    assert (v[5], v[6]) == want, (f"knob {at_crossing}: the clone's copy has bpf_elem {v[5]}, storage {v[6]}; "
                                  f"want {want} ({what})")
