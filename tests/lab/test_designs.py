"""The scenarios lesson 10 shows with each design that came after the RFC
(``Scenario.with_design``, ``scenarios.DESIGNED``: the three clones, each
tunnel's encap and decap, the namespace crossings), and the three ways a
packet ends (``basic``: UDP, TCP, ICMP): the token kept in the skb's BPF
metadata buffer (kernel patch 0011) and in a stash on the gated skb
tracepoints (patch 0012), through the same paths as skb storage
(test_scenarios.py runs every variant with the RFC's design). The event log
must show what the kernel did with it, from its own tracepoints: the
buffer created where a hook wrote it and every block that held it freed;
the skb armed where a hook wrote it, and every armed skb reaped at
skb_gated:skb_free, with nothing left in the stash. And the recordings
lesson 10 replays must still show what the kernel does.
"""

import pytest

from labkit import scenarios
from labkit.runtime import run as runtime
from labkit.runtime.events import EventLog

VARIANTS = [(n, p) for n, p in scenarios.variants() if n == "basic"] + list(
    {(n, tuple(p.items())): (n, p) for n, p, _ in scenarios.designed_variants()}.values())
VARIANT_IDS = ["-".join([n, *map(str, p.values())]) for n, p in VARIANTS]


def same_as_recorded(log, name, params, design):
    """A variant lesson 10 replays: the kernel still does what its recording shows."""
    path = scenarios.recording_path(name, {**params, "design": design})
    if not path.exists():
        assert (name, params, design) not in scenarios.designed_variants(), f"{path.name} is missing"
        return
    recording = EventLog.load(path)
    assert log.signature(packet=1) == recording.signature(packet=1), (
        f"the kernel no longer does what {path.name} shows (re-record with: labkit record --all)\n"
        f"now:\n{log.timeline(packet=1)}\nrecorded:\n{recording.timeline(packet=1)}")


def kinds(log, kind):
    return [e for e in log.events if e["kind"] == kind]


def run(name, params, design):
    sc = scenarios.get(name, **params).with_design(design)
    log = runtime.run(sc)
    sent = sum(p.count for p in sc.packets)
    assert log.packets() == list(range(1, sent + 1)), f"not every packet was seen: {log.timeline()}"
    assert log.header["params"]["design"] == design
    return log


def created_at_hooks(log, slot):
    return [e for e in kinds(log, "hook") if e["maps"][slot]["state"] == "created"]


@pytest.mark.parametrize("name,params", VARIANTS, ids=VARIANT_IDS)
def test_every_scenario_with_the_metadata_buffer(name, params):
    log = run(name, params, "meta")
    made = created_at_hooks(log, "meta")
    assert made, f"no hook created the buffer:\n{log.timeline()}"
    created = kinds(log, "meta_create")
    assert {e["skb"] for e in created} == {e["skb"] for e in made}, \
        f"the kernel's skb_ext_bpf_create events do not match the hooks that created the buffer:\n{log.timeline()}"
    for e in made:
        later = [h for h in kinds(log, "hook") if h["seq"] > e["seq"] and h["skb"] == e["skb"]]
        assert all(h["maps"]["meta"]["state"] == "present" and h["maps"]["meta"]["value"] == e["maps"]["meta"]["value"]
                   for h in later[:1]), f"the next hook of the same skb lost the buffer:\n{log.timeline()}"
    held = {e["block"] for e in created} | {e["to"] for e in kinds(log, "meta_copy") + kinds(log, "meta_scrub")}
    freed = {e["block"] for e in kinds(log, "meta_free")}
    assert held == freed, f"blocks with a buffer never freed: {sorted(held - freed)}\n{log.timeline()}"
    same_as_recorded(log, name, params, "meta")


@pytest.mark.parametrize("name,params", VARIANTS, ids=VARIANT_IDS)
def test_every_scenario_with_the_gated_stash(name, params):
    log = run(name, params, "gated")
    made = created_at_hooks(log, "gated")
    assert made, f"no hook stashed the token:\n{log.timeline()}"
    armed = kinds(log, "gated_arm")
    assert armed and all(e["err"] == 0 for e in armed), f"bpf_trace_skb failed: {armed}"
    followed = {e["skb"] for e in armed} | {e["skb"] for e in kinds(log, "gated_copy")}
    reaped = {e["skb"] for e in kinds(log, "gated_free") if e.get("reaped") is not None}
    assert followed == reaped, \
        f"armed skbs never reaped: {sorted(followed - reaped)}; reaped, never armed: {sorted(reaped - followed)}\n" \
        f"{log.timeline()}"
    assert log.header["gated_left"] == 0, f"{log.header['gated_left']} entries left in the gated stash"
    same_as_recorded(log, name, params, "gated")
