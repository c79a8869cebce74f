"""The optimised skb storage (kernel patches 0008 to 0010) keeps the rules.

kernel.bpf_skb_storage_inline=1 (the default) keeps the first element of a
small plain map inline in the extension chunk and reuses a spare extension
block; =0 is the plain implementation. Both must show the same lifetime:
the flag tests of test_flags.py run under each here, and a kprobe event on
bpf_selem_alloc() shows which implementation a packet really went through.

Patch 0010 has the verifier inline a lookup (flags 0) into programs loaded
while the knob is 1: bpf/inline.bpf.c checks that it finds exactly what
the kfunc finds, and a kprobe on bpf_skb_storage_get() that it finds the
element kept in the block without calling the kfunc.
"""

import os
import struct
from contextlib import contextmanager

import pytest

from labkit import scenarios
from labkit.runtime import run as runtime
from labkit.runtime.events import at, expect, step

from . import test_flags

KNOB = "/proc/sys/kernel/bpf_skb_storage_inline"
TRACEFS = "/sys/kernel/tracing"


@contextmanager
def knob(value):
    """kernel.bpf_skb_storage_inline set to value while open, put back after."""
    with open(KNOB) as fh:
        old = fh.read().strip()
    with open(KNOB, "w") as fh:
        fh.write(str(value))
    try:
        yield
    finally:
        with open(KNOB, "w") as fh:
            fh.write(old)


@pytest.fixture(params=["inline", "plain"])
def implementation(request):
    with knob(1 if request.param == "inline" else 0):
        yield request.param


@contextmanager
def kprobe_counter(func):
    """A function returning how many times the kernel function func ran since, from a tracefs kprobe event."""
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        os.system(f"mount -t tracefs nodev {TRACEFS}")
    event = f"lk_{func}"

    def write(path, text, append=False):
        # os.open: Python's append mode seeks to the end, which tracefs files refuse
        fd = os.open(os.path.join(TRACEFS, path), os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    write("kprobe_events", f"p:{event} {func}\n", append=True)
    write("trace", "")
    write(f"events/kprobes/{event}/enable", "1")
    try:
        yield lambda: sum(f"{event}:" in line for line in open(os.path.join(TRACEFS, "trace")))
    finally:
        write(f"events/kprobes/{event}/enable", "0")
        write("kprobe_events", f"-:{event}\n", append=True)
        write("trace", "")


@pytest.fixture
def selem_allocs():
    """A counter of bpf_selem_alloc() calls."""
    with kprobe_counter("bpf_selem_alloc") as count:
        yield count


def test_the_knob_is_there():
    assert os.path.exists(KNOB), "the lab kernel has no kernel.bpf_skb_storage_inline"


def test_first_element_skips_bpf_local_storage(implementation, selem_allocs):
    sc = scenarios.get("netns", path="veth")  # writes storage_a once, at tc egress
    log = runtime.run(sc)
    expect(log, (at("tc/egress", "lk-a0", storage_a="created"),))
    if implementation == "inline":
        assert selem_allocs() == 0, "the first element went through bpf_selem_alloc()"
    else:
        assert selem_allocs() >= 1, "the plain implementation allocated no element"


def test_second_map_still_uses_bpf_local_storage(implementation, selem_allocs):
    log = test_flags.run("netns", path="veth")  # storage_a and storage_b on one skb
    expect(log, (at("tc/egress", "lk-a0", storage_a="created", storage_b="created"),))
    assert selem_allocs() >= 1


def test_clone_rules_under_both(implementation):
    test_flags.test_clone_flag_gives_the_clone_its_own_copy("mirred")
    test_flags.test_without_the_clone_flag_both_are_refused("mirred")
    test_flags.test_clone_flag_on_an_af_packet_tap()


def test_tunnel_and_netns_rules_under_both(implementation):
    test_flags.test_keep_tunnel_survives_encap_not_the_underlay_crossing("vxlan")
    test_flags.test_keep_tunnel_and_netns_carry_storage_end_to_end("geneve")
    test_flags.test_keep_netns_survives_redirect_peer()
    test_flags.test_without_keep_netns_a_veth_crossing_drops_it(())


def test_delete_under_both(implementation):
    log = runtime.run(test_flags.deleting_at_socket())
    expect(log, (at("tc/ingress", "lk-t", storage_a="created"),
                 step("storage_free", map="storage_a", where="bpf_skb_storage_delete", same_skb=True),
                 at("cgroup_skb/ingress", storage_a="absent", same_skb=True)))


# ---- the inlined lookup (patch 0010) --------------------------------------------------


def run_inline(prog, token):
    """Load bpf/inline.bpf.o (the knob as the implementation fixture set it: the verifier inlines
    lookups only into programs loaded while it is 1), run prog once on a fresh skb under
    BPF_PROG_TEST_RUN: (its res, how many times bpf_skb_storage_get() itself ran)."""
    from labkit.bpf.build import obj_path
    from labkit.bpf.libbpf import BpfObject
    from labkit.runtime.packets import udp_frame

    with BpfObject(obj_path("inline"), programs=[prog]) as obj, kprobe_counter("bpf_skb_storage_get") as calls:
        retval, _, _ = obj.program(prog).test_run(udp_frame(token))
        assert retval == 0
        return struct.unpack("<8q", obj.bss().lookup(b"\0\0\0\0")), calls()


def test_an_inlined_lookup_finds_the_element_without_a_call(implementation, token):
    """Create, look up the same map, look up another: the same value back, and NULL for the other
    map. Inlined, the lookup that finds the element kept in the block calls nothing; the other
    map's lookup, which finds no element of its map there, calls the kfunc; plain, all three call."""
    res, calls = run_inline("create_then_lookup", token)
    assert res[:3] == (1, 41, 1), f"same value: {res[0]}, read back: {res[1]}, other map NULL: {res[2]}"
    assert calls == (2 if implementation == "inline" else 3), f"bpf_skb_storage_get() ran {calls} times"


def test_the_inlined_lookup_compares_the_map_passed_at_run_time(implementation, token):
    """Two inner maps of one shape behind one lookup call site: the verifier knows only their
    template, so the inlined code must compare the map the program passes. The element created in
    inner_0 is found through inner_0 (without a call when inlined) and not through inner_1."""
    res, calls = run_inline("inner_lookup", token)
    assert res[2] == 1, "the program did not reach its lookups"
    assert (res[0], res[1]) == (1, 0), f"inner_0 lookup: {res[0]} (1 = the element), inner_1: {res[1]} (0 = NULL)"
    assert calls == (2 if implementation == "inline" else 3), f"bpf_skb_storage_get() ran {calls} times"


def test_a_deleted_inline_element_is_not_found(implementation, token):
    """A deleted element stays where it was in the block; the inlined lookup must not return it."""
    res, _ = run_inline("lookup_after_delete", token)
    assert res[2] == 1, "the program did not run"
    assert res[0] == 0, f"delete returned {res[0]}"
    assert res[1] == 1, "a lookup after delete found the deleted element"
