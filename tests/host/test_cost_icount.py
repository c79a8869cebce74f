"""Per-packet cost in guest instructions, on a lab VM that counts them (``Lab(clock="icount")``).

Under icount QEMU moves the guest's clock 1 ns per guest instruction and the guest's TSC is
declared at 1 GHz, so the kernel's BPF statistics (``run_time_ns / run_cnt``) count instructions
per program run. One VM for the module (about 20 s to boot), two checks:

- calibration: tc programs that are the floor plus exactly 16 and 64 instructions
  (``bench_cal16_w``, ``bench_cal64_w`` in bpf/bench.bpf.c) read 16 and 64 more than the floor,
  within 2: the unit is instructions;
- the cost regression: optimised (inline) skb storage costs fewer instructions than the plain
  (RFC-shaped) implementation and than the hash side-stash, per role, and no more over the floor
  than this kernel's figures (CEILINGS). A change that adds instructions to the fast path fails
  here with the whole table.

The issue's targets (TARGETS: create+write <= 2.5x, lookup+read <= 1.3x the floor) are not met
by this kernel (benchmarks/README.md has the figures and what stands between): CEILINGS hold what
it does reach, so that it does not get worse; lower them as the kernel gets cheaper.

An interrupt that lands inside a program run adds its handler's instructions to that run (about
3000 for a timer tick: +10 per run over 300 packets), so the calibration takes each program's
fewest over its repeats; the regression uses the medians the benchmark reports.
"""

import pytest

from labkit.benchrun import run_in_vm
from labkit.costplot import table_text
from tests.host.conftest import lab_qemus, vm_prerequisites

TARGETS = {"write": 2.5, "read": 1.3}  # optimised skb storage, ratio to the floor (issue 15): not met yet
# Optimised skb storage, instructions over the floor of the same run, on this kernel (each repeat's
# figure is the median over chunks of 100 packets; create+write is the path with a spare block,
# which most chunks take: a margin of 5 in case a run takes the allocator more often).
CEILINGS = {"write": 240, "read": 41}  # measured 2026-12-02: 235 and 41, each the same in every repeat
CALIBRATION = {"floor+16": 16, "floor+64": 64}


@pytest.fixture(scope="module")
def icount_lab():
    """One lab VM that counts instructions, for the module; skip (fail in CI) without the kernel."""
    from labkit.vm import Lab

    kdir = vm_prerequisites()
    before = set(lab_qemus())
    with Lab(kdir, clock="icount") as lab:
        yield lab
    left = set(lab_qemus()) - before
    assert not left, f"QEMU processes left behind: {left}"


def test_floor_plus_n_instructions_reads_n_more(icount_lab):
    res = run_in_vm(icount_lab, 300, 3, designs=list(CALIBRATION), timeout=600)
    table = table_text(res)
    assert (res["clock"], res["unit"]) == ("icount", "instructions"), table
    assert res["problems"] == [], table
    floor = res["designs"]["floor"]["write"]["ns"]["min"]
    for design, n in CALIBRATION.items():
        extra = res["designs"][design]["write"]["ns"]["min"] - floor
        assert abs(extra - n) <= 2, f"{design}: {extra:g} instructions over the floor, not {n}\n{table}"


def test_optimised_storage_costs_less_than_plain_and_stash_and_no_more_than_today(icount_lab):
    res = run_in_vm(icount_lab, 2000, 3, timeout=900)
    d = res["designs"]
    assert res["unit"] == "instructions" and res["problems"] == [], table_text(res)
    failures = []
    for role, ceiling in CEILINGS.items():
        inline = d["skb_storage:inline"][role]["ns"]["median"]
        for other in ("skb_storage:plain", "stash"):
            if not inline < d[other][role]["ns"]["median"]:
                failures.append(f"{role}: skb_storage:inline {inline:g} instructions, not below "
                                f"{other} {d[other][role]['ns']['median']:g}")
        extra = inline - d["floor"][role]["ns"]["median"]
        if not extra <= ceiling:
            failures.append(f"{role}: skb_storage:inline {extra:g} instructions over the floor, more than this "
                            f"kernel's {ceiling} (target {TARGETS[role]}x the floor)")
    assert not failures, "\n".join(failures) + f"\n\n{table_text(res)}"
