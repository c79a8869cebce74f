"""The storage benchmark's harness on the lab kernel: every design's programs
run once per packet and find what their writer left, so the timings it
reports are of programs that did their job; and it leaves the kernel's
settings as it found them. (The timings themselves are in benchmarks/.)"""

from labkit.bench import designs
from labkit.bench import storage as bench


def _read(path):
    with open(path) as fh:
        return fh.read().strip()


def test_every_design_does_its_job_and_settings_are_restored():
    stats, inline = _read(bench.STATS), _read(designs.INLINE)
    res = bench.Bench(packets=300, repeats=1).run()
    assert res["problems"] == []
    assert set(res["designs"]) == {"floor", "skb_storage:plain", "skb_storage:inline", "stash", "mark", "data_meta",
                                   "floor_xdp", "skb_ext", "gated", "gated_clone"}
    for name, d in res["designs"].items():
        assert d["received"] == [300], name
        for role, v in d.items():
            if role != "received":
                assert v["ns"]["median"] > 0, (name, role)
    for prog, t in res["test_run"].items():
        assert t.get("ns", 0) > 0, (prog, t)
    assert (_read(bench.STATS), _read(designs.INLINE)) == (stats, inline)


def test_a_run_first_removes_what_a_killed_run_left_and_only_that():
    """A run killed mid-way leaves its namespaces, cgroup and changed settings; the next run
    removes exactly those (another lab namespace stays) and puts the saved settings back."""
    import json
    import os

    from labkit.guest.netns import sh

    stats = _read(bench.STATS)
    for ns in (bench.NS_TX, bench.NS_RX, "bench_other"):
        sh("ip", "netns", "add", f"lk-{ns}")
    os.mkdir(f"/sys/fs/cgroup/{bench.CGROUP}")
    with open(bench.SAVED, "w") as fh:
        json.dump({"stats": stats, "inline": _read(designs.INLINE)}, fh)
    with open(bench.STATS, "w") as fh:
        fh.write("1" if stats == "0" else "0")
    try:
        seen = []
        res = bench.Bench(packets=100, repeats=1, progress=seen.append).run()
        assert res["problems"] == []
        assert any(s.startswith("removed what an earlier benchmark left: deleted netns lk-bench_tx") for s in seen)
        assert os.path.exists("/run/netns/lk-bench_other")
        assert not os.path.exists(f"/run/netns/lk-{bench.NS_TX}") and not os.path.exists(bench.SAVED)
        assert not os.path.isdir(f"/sys/fs/cgroup/{bench.CGROUP}")
        assert _read(bench.STATS) == stats
    finally:
        sh("ip", "netns", "del", "lk-bench_other", check=False)


def test_one_benchmark_at_a_time():
    import pytest

    fd = bench.hold_lock()
    try:
        with pytest.raises(designs.BenchError, match="another benchmark is running in this lab VM"):
            bench.Bench(packets=100, repeats=1).run()
    finally:
        import os

        os.close(fd)
