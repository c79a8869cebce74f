"""How ./lab test shares its tiers out: the lab tier's files between VMs, the runs' shared folder."""

import os

from labkit import testrun
from tests import shared


def test_split_balances_the_measured_seconds_and_keeps_every_file_once():
    seconds = {"a": 60.0, "b": 50.0, "c": 30.0, "d": 20.0, "e": 5.0}
    groups = testrun.split(list(seconds) + ["f"], 2, seconds)
    assert sorted(f for g in groups for f in g) == ["a", "b", "c", "d", "e", "f"]
    loads = [sum(seconds.get(f, 5.0) for f in g) for g in groups]
    assert max(loads) - min(loads) <= 10.0, groups
    assert testrun.split(["a", "b"], 1, seconds) == [["a", "b"]]
    assert testrun.split(["a"], 3, seconds) == [["a"]]  # no empty group


def test_lab_groups_cover_every_lab_test_file():
    files = sorted(f"tests/lab/{p}" for p in os.listdir(testrun.paths.PROJECT / "tests" / "lab")
                   if p.startswith("test_") and p.endswith(".py") and f"tests/lab/{p}" != testrun.DEBUG_ONLY)
    groups = testrun.lab_groups(2)
    assert len(groups) == 2 and sorted(f for g in groups for f in g) == files


def test_a_shared_resource_is_made_once_and_undone_by_the_controller(tmp_path, monkeypatch):
    monkeypatch.delenv(shared.ENV, raising=False)
    monkeypatch.delenv("LABKIT_GUEST", raising=False)
    folder = shared.start_run()
    try:
        made = []
        make = lambda: made.append(1) or {"n": len(made), "file": str(tmp_path / "thing")}  # noqa: E731
        first = shared.shared("thing", make, "tests.unit.test_testrun:undo")
        (tmp_path / "thing").write_text("x")
        assert shared.shared("thing", make, "tests.unit.test_testrun:undo") == first == {"n": 1, "file": first["file"]}
    finally:
        shared.end_run(folder)
    assert not (tmp_path / "thing").exists(), "the controller did not undo what a worker made"
    assert not os.path.exists(folder) and shared.ENV not in os.environ


def undo(value):
    os.unlink(value["file"])
