"""How a benchmark run in the lab VM ends, as the host reports it: a failure carries the guest's
message, fix and details; an interrupt is an Interrupted that says what was removed."""

import json

import pytest

from labkit.bench import run as benchrun
from labkit.bench.designs import BenchError
from labkit.runtime.session import Interrupted
from labkit.vm.commands import Result


class FakeLab:
    def __init__(self, result=None, interrupt=False):
        self.result, self.interrupt = result, interrupt
        self.calls = []

    def run(self, argv, **kw):
        self.calls.append((argv, kw))
        if self.interrupt:
            raise KeyboardInterrupt
        return self.result


def report(**what):
    return (benchrun.REPORT + json.dumps(what) + "\n").encode()


def test_a_failure_shows_the_guests_detail_and_fix():
    out = report(error="namespace lk-bench_tx already exists (left by an earlier run?)", fix="run: labkit cleanup",
                 details="")
    lab = FakeLab(Result(1, out, b"progress\nlabkit bench: namespace lk-bench_tx already exists\n"))
    with pytest.raises(BenchError) as err:
        benchrun.run_in_vm(lab, 100, 1)
    assert err.value.message == ("the benchmark failed in the lab VM: namespace lk-bench_tx already exists "
                                 "(left by an earlier run?)")
    assert err.value.fix == "run: labkit cleanup"
    assert "labkit bench: namespace lk-bench_tx already exists" in err.value.details
    assert lab.calls[0][1]["interrupt_grace"] > 0  # a Ctrl-C lets it tear down


def test_a_crash_without_a_report_names_its_last_words():
    lab = FakeLab(Result(1, b"", b"Traceback (most recent call last):\n  ...\nOSError: [Errno 16] busy\n"))
    with pytest.raises(BenchError) as err:
        benchrun.run_in_vm(lab, 100, 1)
    assert err.value.message == "the benchmark failed in the lab VM (status 1): OSError: [Errno 16] busy"
    assert err.value.fix == benchrun.RERUN and "Traceback" in err.value.details


def test_an_interrupt_that_cleaned_up():
    out = report(interrupted=True, swept=[])
    with pytest.raises(Interrupted) as err:
        benchrun.run_in_vm(FakeLab(Result(130, out, b"", interrupted=True)), 100, 1)
    assert "interrupted; it stopped and removed its namespaces" in err.value.message
    assert err.value.fix == "run the cell again"


def test_an_interrupt_as_it_starts():
    res = Result(1, b"", b"Traceback (most recent call last):\n  ...\nKeyboardInterrupt\n", interrupted=True)
    with pytest.raises(Interrupted, match="as it started, before it had built anything"):
        benchrun.run_in_vm(FakeLab(res), 100, 1)


def test_an_interrupt_after_the_results_still_stops():
    res = Result(0, b'{\n "designs": {}\n}\n', b"", interrupted=True)
    with pytest.raises(Interrupted, match="it had finished"):
        benchrun.run_in_vm(FakeLab(res), 100, 1)


def test_a_second_interrupt_says_the_next_run_cleans_up():
    with pytest.raises(Interrupted) as err:
        benchrun.run_in_vm(FakeLab(interrupt=True), 100, 1)
    assert "next run removes what this one left" in err.value.fix


def test_results_come_back():
    res = Result(0, b"removed nothing\n{\n \"designs\": {\"floor\": {}}\n}\n", b"")
    assert benchrun.run_in_vm(FakeLab(res), 100, 1) == {"designs": {"floor": {}}}


def test_guest_report_takes_the_last_report_line():
    out = "x\n" + benchrun.REPORT + '{"error": "a"}\n' + benchrun.REPORT + '{"error": "b"}\n'
    assert benchrun.guest_report(out) == {"error": "b"}
    assert benchrun.guest_report("nothing\n") == {}


def test_some_designs_only(monkeypatch):
    from labkit.bench import designs as bench

    monkeypatch.setattr(bench, "inline_available", lambda: True)
    every = [("floor", None), ("skb_storage", "0"), ("skb_storage", "1"), ("stash", None), ("mark", None),
             ("data_meta", None), ("floor_xdp", None), ("skb_ext", None), ("gated", None), ("gated_clone", None)]
    assert bench.plan() == every
    assert bench.plan(["floor+16", "floor+64"]) == [("floor", None), ("floor+16", None), ("floor+64", None)]
    assert bench.plan(["skb_storage:inline", "stash", "floor"]) == [("floor", None), ("skb_storage", "1"),
                                                                    ("stash", None)]
    with pytest.raises(BenchError, match="no design 'nope'"):
        bench.plan(["nope"])
    monkeypatch.setattr(bench, "inline_available", lambda: False)
    assert bench.plan(["skb_storage"]) == [("floor", None), ("skb_storage", None)]
    lab = FakeLab(Result(0, b'{"designs": {}}\n', b""))
    benchrun.run_in_vm(lab, 300, 2, designs=["floor+16", "floor+64"])
    assert lab.calls[0][0][-2:] == ["--designs", "floor+16,floor+64"]
    benchrun.run_in_vm(lab, 300, 2)
    assert "--designs" not in lab.calls[1][0]


def test_the_results_say_their_unit(monkeypatch, capsys):
    from labkit.bench import designs as bench

    cmdline = {"text": "console=ttyS0 tsc_early_khz=1000000 labkit.clock=icount\n"}

    class FakeBench:
        def __init__(self, *a, **kw):
            pass

        def run(self):
            return {"designs": {}, "notes": {"test_run": "x"}}

    real_open = open
    monkeypatch.setattr(benchrun, "Bench", FakeBench)
    monkeypatch.setattr("builtins.open", lambda p, *a, **kw: __import__("io").StringIO(cmdline["text"])
                        if p == "/proc/cmdline" else real_open(p, *a, **kw))
    assert benchrun.main([]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["clock"], res["unit"]) == ("icount", "instructions")
    assert res["notes"]["unit"].startswith("Figures are guest instructions") and "cache misses" in res["notes"]["unit"]
    cmdline["text"] = "console=ttyS0 tsc_early_khz=2400000\n"
    assert benchrun.main([]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["clock"], res["unit"], res["notes"]["test_run"]) == ("wall", "ns", "x")
    assert bench.CALIBRATION.keys() == {"floor+16", "floor+64"}


def test_a_lesson_benches_on_the_clock_it_is_asked_for(monkeypatch, tmp_path):
    """lab.bench(clock="icount") replaces a wall-clock lab VM by one that counts instructions (and
    keeps it for the next call), and says which kernel it ran on; in replay it reads the icount
    recording."""
    import json
    from types import SimpleNamespace

    from labkit.course import lesson

    les = lesson.Lesson.__new__(lesson.Lesson)
    les.mode, les.clock, les.session = "live", "wall", None
    booted, closed = [], []
    build = {"key": "0123456789abcdef", "source": "linux-source-6.12 6.12.999-1"}
    (tmp_path / "build.json").write_text(json.dumps(build))

    def start(say=print):
        if les.session is None:
            booted.append(les.clock)
            les.session = SimpleNamespace(lab=SimpleNamespace(clock=les.clock, kernel_dir=tmp_path),
                                          close=lambda: closed.append(1))
        return les

    monkeypatch.setattr(les, "start", start)
    monkeypatch.setattr(benchrun, "run_in_vm", lambda lab, packets, repeats, **kw: {"clock": lab.clock})
    assert les.bench(100, 1) == {"clock": "wall", "kernel_build": build}
    assert les.bench(100, 1, clock="icount") == {"clock": "icount", "kernel_build": build}
    assert les.bench(100, 1) == {"clock": "icount", "kernel_build": build}
    assert booted == ["wall", "icount"] and closed == [1]
    les.mode = "replay"
    assert les.bench(clock="icount")["replay"] == les.RECORDED_COST_ICOUNT
    assert les.bench(clock="wall")["replay"] == les.RECORDED_COST


def test_a_measuring_lesson_counts_instructions_wherever_the_lab_vm_is_not_kvm(monkeypatch):
    from labkit import kernel
    from labkit.course import lesson
    from labkit.vm import lab

    assert lesson.measure_clock(False) == "icount"  # replay: the recording counts instructions
    monkeypatch.setattr(kernel, "kernel_path", lambda: "/k")
    monkeypatch.setattr(lab, "choose_accel", lambda kdir, probe=True: ("tcg", "no /dev/kvm"))
    assert lesson.measure_clock(True) == "icount"
    monkeypatch.setattr(lab, "choose_accel", lambda kdir, probe=True: ("kvm", "probed"))
    assert lesson.measure_clock(True) == "wall"


def test_the_bounds_say_whether_and_by_how_much_they_are_kept():
    from labkit.bench import plot as costplot

    res = {"unit": "instructions", "designs": {
        "floor": {"write": {"ns": {"median": 68}}, "read": {"ns": {"median": 66}}},
        "skb_storage:inline": {"write": {"ns": {"median": 353}, "ratio": {"median": 5.19}},
                               "read": {"ns": {"median": 80}, "ratio": {"median": 1.21}}}}}
    text = costplot.bounds_html(res)
    assert "write 353 instructions (5.19x the floor), bound 303: <b>over by 50</b>" in text
    assert "read 80 instructions (1.21x the floor), bound 107: <b>within</b>" in text
    assert text.startswith("<p>The optimised skb storage goes over its bounds")
    assert costplot.bound_ratio(res, "skb_storage:inline", "write") == 303 / 68
    assert costplot.bounds_html({**res, "unit": "ns"}) == "" and costplot.bound_ratio(
        {**res, "unit": "ns"}, "skb_storage:inline", "write") is None


def test_a_live_count_on_another_kernel_says_so(monkeypatch, tmp_path):
    """Debian serves a new point release of linux-source-6.12: the lesson's live counts are that
    kernel's, and it says the text quotes a recording made on another one."""
    import json

    from labkit import paths
    from labkit.course import lesson

    rec = tmp_path / "rec.json"
    rec.write_text(json.dumps({"kernel_build": {"key": "aaaa", "source": "linux-source-6.12 6.12.117-1"}}))
    monkeypatch.setattr(paths, "shipped", lambda rel: rec)
    les = lesson.Lesson.__new__(lesson.Lesson)
    live = {"unit": "instructions", "kernel_build": {"key": "bbbb", "source": "linux-source-6.12 6.12.118-1"}}
    said = les.recorded_on_another_kernel(live)
    assert "6.12.118-1" in said and "6.12.117-1" in said and "another Debian point release" in said
    same = {**live, "kernel_build": {"key": "aaaa", "source": "linux-source-6.12 6.12.117-1"}}
    assert les.recorded_on_another_kernel(same) is None
    assert les.recorded_on_another_kernel({**live, "replay": "x"}) is None
