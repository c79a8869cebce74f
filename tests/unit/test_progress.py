"""Every exercise check appends its verdict to the learner's own progress.jsonl."""

import json
import os
import stat
from types import SimpleNamespace

import pytest

from labkit.course import checking
from labkit.errors import LabError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache" / "labkit"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return tmp_path / "cache" / "labkit"


@checking.checked("01")
def passes(lab):
    return checking.Verdict("01", True, "every delivered packet reports its own delay")


@checking.checked("04")
def breaks(lab):
    raise LabError("your program did not load", fix="fix it")


def lines(cache):
    return [json.loads(x) for x in (cache / "progress.jsonl").read_text().splitlines()]


def test_each_check_appends_its_verdict(cache, monkeypatch):
    live, replay = SimpleNamespace(live=True, mode="live"), SimpleNamespace(live=False, mode="replay")
    assert passes(live, quiet=True).passed is True
    assert breaks(live, quiet=True).passed is False
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/ann/notebooks/01_first_storage.ipynb")
    assert passes(replay, quiet=True).passed is None
    got = lines(cache)
    assert [(g["lesson"], g["exercise"], g["check"], g["passed"], g["mode"]) for g in got] == [
        ("01_first_storage", "01", "passes", True, "live"),
        ("04_tunnels", "04", "breaks", False, "live"),
        ("01_first_storage", "01", "passes", None, "replay")]
    assert got[1]["summary"] == "your program did not load"
    assert got[2]["notebook"].endswith("01_first_storage.ipynb") and "notebook" not in got[0]
    assert all(g["when"].endswith("Z") and len(g["when"]) == 20 for g in got)


def test_the_progress_file_is_private(cache):
    passes(SimpleNamespace(live=True, mode="live"), quiet=True)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "progress.jsonl").stat().st_mode) == 0o600


def test_a_cache_that_cannot_be_written_never_fails_the_check(cache):
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the directory should be")
    v = passes(SimpleNamespace(live=True, mode="live"), quiet=True)
    assert v.passed is True
    assert not os.path.isdir(cache)


def test_a_replay_because_of_the_vm_cap_says_why_in_the_check(cache):
    why = "all 2 lab VMs on this server are in use; this notebook replays recordings made on the lab kernel"
    v = passes(SimpleNamespace(live=False, mode="replay", fallback=why), quiet=True)
    assert v.passed is None and v.lines == [why]
    assert "./lab open" in passes(SimpleNamespace(live=False, mode="replay"), quiet=True).lines[0]
