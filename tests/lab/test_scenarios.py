"""Every scenario of the library, on the lab kernel: its expected path
holds for every packet, and the recording in notebooks/data/ (the replay
fixture) still matches what the kernel does now.

Re-record after a deliberate change with: labkit record --all
"""

import pytest

from labkit import scenarios
from labkit.runtime import run as runtime
from labkit.runtime.events import EventLog, expect

VARIANTS = scenarios.variants()


@pytest.mark.parametrize("name,params", VARIANTS, ids=["-".join([n, *map(str, p.values())]) for n, p in VARIANTS])
def test_scenario_path_and_recording(name, params):
    sc = scenarios.get(name, **params)
    log = runtime.run(sc)
    sent = sum(p.count for p in sc.packets)
    assert log.packets() == list(range(1, sent + 1)), f"not every packet was seen: {log.timeline()}"
    for p in log.packets():
        expect(log, sc.expect, packet=p)
    recording = EventLog.load(scenarios.recording_path(name, params))
    assert recording.header["scenario"] == name and recording.header["params"] == params
    assert log.signature(packet=1) == recording.signature(packet=1), (
        f"the kernel no longer does what {scenarios.recording_path(name, params).name} shows "
        f"(re-record with: labkit record --all)\nnow:\n{log.timeline(packet=1)}\nrecorded:\n"
        f"{recording.timeline(packet=1)}")
    assert log.header["stash_left"] == 0 or name == "side_stash"


FLAGGED = scenarios.flagged_variants()


@pytest.mark.parametrize("name,params,flags", FLAGGED,
                         ids=["-".join([n, *map(str, p.values()), "+".join(f)]) for n, p, f in FLAGGED])
def test_flagged_recording_matches_the_kernel(name, params, flags):
    """Lesson 08 replays these: what they show must be what the kernel does with the flags."""
    sc = scenarios.get(name, flags=flags, **params)
    log = runtime.run(sc)
    assert log.packets() == [1]
    path = scenarios.recording_path(name, params, flags)
    recording = EventLog.load(path)
    assert recording.header.get("map_flags") == {"storage_a": list(flags)}, path.name
    assert log.signature(packet=1) == recording.signature(packet=1), (
        f"the kernel no longer does what {path.name} shows (re-record with: labkit record --all)\n"
        f"now:\n{log.timeline(packet=1)}\nrecorded:\n{recording.timeline(packet=1)}")
