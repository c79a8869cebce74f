"""The splat scan works: a fault planted on purpose is reported.

Only on the debug kernel (its lkdtm provokes faults on demand); the
lab tier's conftest collects this file there alone.
"""

import os

import pytest

from labkit import splats

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


def test_no_fault_no_splat(kmsg):
    kmsg.read()
    with open("/proc/sys/kernel/bpf_skb_storage_inline") as fh:
        fh.read()
    assert kmsg.splats() == []


def test_lkdtm_is_the_debug_kernels_alone():
    assert os.uname().release.endswith("-labkit-debug")
