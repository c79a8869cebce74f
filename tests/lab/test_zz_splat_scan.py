"""The splat scan works: a fault planted on purpose is reported.

Only on the debug kernel (its lkdtm provokes faults on demand); the
lab tier's conftest collects this file there alone.
"""

import os

import pytest

from labkit.kernel import splats

DIRECT = "/sys/kernel/debug/provoke-crash/DIRECT"


def provoke(what):
    splats.debugfs()
    with open(DIRECT, "w") as fh:
        fh.write(what)


@pytest.mark.parametrize("fault, head", [
    ("WARNING", "WARNING: "),
    ("READ_AFTER_FREE", "BUG: KASAN: slab-use-after-free"),
])
def test_a_planted_fault_is_found(kmsg, fault, head):
    kmsg.read()
    provoke(fault)
    found = kmsg.splats()
    assert any(head in s for s in found), f"lkdtm {fault} left no '{head}' splat; found: {found}"


SPARE_TEST = "/sys/kernel/debug/skb_ext_spare_test"


def test_a_read_of_a_parked_spare_block_is_reported(kmsg):
    """Spare extension blocks (patch 0009) are kept, not freed: unless they
    are poisoned while parked, an access through a stale pointer to one
    reads a live-looking block and KASAN says nothing (the series before
    the second read's N3 fix: no report). The debug kernel's test file
    (CONFIG_BPF_SKB_STORAGE_SPARE_TEST) parks a block and reads it."""
    kmsg.read()
    splats.debugfs()
    with open(SPARE_TEST, "w") as fh:
        fh.write("1")  # fails with ENOSPC when the block could not be parked (no room)
    found = kmsg.splats()
    assert any("BUG: KASAN: " in s and "use-after-free" in s and "skb_ext_spare_test" in s for s in found), (
        f"reading a parked spare block left no KASAN use-after-free report; found: {found}")


def test_no_fault_no_splat(kmsg):
    kmsg.read()
    with open("/proc/sys/kernel/bpf_skb_storage_inline") as fh:
        fh.read()
    assert kmsg.splats() == []


def test_lkdtm_is_the_debug_kernels_alone():
    assert os.uname().release.endswith("-labkit-debug")
