"""Picking kernel splats out of the guest's log (labkit.kernel.splats)."""

from labkit.kernel.splats import find_splats

KASAN = """\
==================================================================
BUG: KASAN: slab-use-after-free in bpf_map_put+0x1a/0x80
Read of size 8 at addr ffff888003a1c000 by task ksoftirqd/0/14
CPU: 0 UID: 0 PID: 14 Comm: ksoftirqd/0 Not tainted 6.12.57-labkit-debug
Call Trace:
 <TASK>
 dump_stack_lvl+0x5d/0x80
==================================================================
lo: link up""".splitlines()

WARN = """\
------------[ cut here ]------------
WARNING: CPU: 1 PID: 99 at net/core/bpf_skb_storage.c:444 bpf_skb_storage_get+0x30/0x200
Modules linked in:
---[ end trace 0000000000000000 ]---
ordinary line""".splitlines()


def test_a_kasan_report_is_one_splat_from_its_banner():
    found = find_splats(["random: crng init done", *KASAN])
    assert len(found) == 1
    assert found[0].splitlines()[1].startswith("BUG: KASAN: slab-use-after-free")
    assert "lo: link up" not in found[0]


def test_a_warn_is_one_splat_up_to_its_end_trace():
    found = find_splats(WARN)
    assert len(found) == 1 and found[0].endswith("---[ end trace 0000000000000000 ]---")


def test_lockdep_and_rcu_reports_count():
    for head in ("WARNING: possible circular locking dependency detected",
                 "WARNING: suspicious RCU usage",
                 "BUG: sleeping function called from invalid context at mm/slub.c:4100",
                 "Oops: general protection fault, probably for non-canonical address 0xdead"):
        assert len(find_splats(["x", head, "more"])) == 1, head


def test_ordinary_lines_and_lone_banners_are_not_splats():
    lines = ["virtio_net virtio1 eth0: renamed", "=" * 66, "bpf: map freed", "BPF: warning-free line"]
    assert find_splats(lines) == []
