"""The storage benchmark's harness on the lab kernel: every design's programs
run once per packet and find what their writer left, so the timings it
reports are of programs that did their job; and it leaves the kernel's
settings as it found them. (The timings themselves are in benchmarks/.)"""

from labkit import bench


def _read(path):
    with open(path) as fh:
        return fh.read().strip()


def test_every_design_does_its_job_and_settings_are_restored():
    stats, inline = _read(bench.STATS), _read(bench.INLINE)
    res = bench.Bench(packets=300, repeats=1).run()
    assert res["problems"] == []
    assert set(res["designs"]) == {"floor", "skb_storage:plain", "skb_storage:inline", "stash", "mark", "data_meta",
                                   "floor_xdp"}
    for name, d in res["designs"].items():
        assert d["received"] == [300], name
        for role, v in d.items():
            if role != "received":
                assert v["ns"]["median"] > 0, (name, role)
    for prog, t in res["test_run"].items():
        assert t.get("ns", 0) > 0, (prog, t)
    assert (_read(bench.STATS), _read(bench.INLINE)) == (stats, inline)
