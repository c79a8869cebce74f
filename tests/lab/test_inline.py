"""The optimised skb storage (kernel patches 0008 and 0009) keeps the rules.

kernel.bpf_skb_storage_inline=1 (the default) keeps the first element of a
small plain map inline in the extension chunk and reuses a spare extension
block; =0 is the plain implementation. Both must show the same lifetime:
the flag tests of test_flags.py run under each here, and a kprobe event on
bpf_selem_alloc() shows which implementation a packet really went through.
"""

import os

import pytest

from labkit import runtime, scenarios
from labkit.events import at, expect, step

from . import test_flags

KNOB = "/proc/sys/kernel/bpf_skb_storage_inline"
TRACEFS = "/sys/kernel/tracing"


@pytest.fixture(params=["inline", "plain"])
def implementation(request):
    with open(KNOB) as fh:
        old = fh.read().strip()
    with open(KNOB, "w") as fh:
        fh.write("1" if request.param == "inline" else "0")
    try:
        yield request.param
    finally:
        with open(KNOB, "w") as fh:
            fh.write(old)


@pytest.fixture
def selem_allocs():
    """A counter of bpf_selem_alloc() calls, from a tracefs kprobe event."""
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        os.system(f"mount -t tracefs nodev {TRACEFS}")

    def write(path, text, append=False):
        # os.open: Python's append mode seeks to the end, which tracefs files refuse
        fd = os.open(os.path.join(TRACEFS, path), os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC))
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    write("kprobe_events", "p:lk_selem_alloc bpf_selem_alloc\n", append=True)
    write("trace", "")
    write("events/kprobes/lk_selem_alloc/enable", "1")
    try:
        yield lambda: sum("lk_selem_alloc:" in line for line in open(os.path.join(TRACEFS, "trace")))
    finally:
        write("events/kprobes/lk_selem_alloc/enable", "0")
        write("kprobe_events", "-:lk_selem_alloc\n", append=True)
        write("trace", "")


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
