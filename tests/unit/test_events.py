"""EventLog files and expect(), on hand-made events (no VM)."""

import json

import pytest

from labkit.runtime.decode import to_events
from labkit.runtime.events import SCHEMA, EventLog, ExpectationError, LogFormatError, at, expect, step
from labkit.runtime.records import RECORD_SIZE, Record


def ev(seq, kind="hook", skb="0x1", **kw):
    e = {"seq": seq, "t_us": float(seq), "kind": kind, "skb": skb, "packet": 1}
    e.update(kw)
    return e


def maps(a="absent", value=None):
    m = {"storage_a": {"state": a}, "storage_b": {"state": "absent"}, "stash": {"state": "absent"}}
    if value is not None:
        m["storage_a"]["value"] = value
    return m


LOG = EventLog([
    ev(0, hook="tc/egress", ifname="lk-a0", ns="a", maps=maps("created", 7)),
    ev(1, "scrub", xnet=True, where="__dev_forward_skb2", stack=["__dev_forward_skb2", "veth_xmit"]),
    ev(2, hook="tc/ingress", ifname="lk-b0", ns="b", maps=maps("absent")),
    ev(3, "clone", skb="0x2", parent="0x1", where="tcf_mirred_act"),
    ev(4, hook="cgroup_skb/ingress", ifname="lk-b0", ns="b", maps=maps("refused")),
], {"scenario": "t", "params": {"k": "v"}, "kernel": "6.12.117-labkit"})


def test_round_trip(tmp_path):
    path = LOG.save(tmp_path / "x.jsonl")
    again = EventLog.load(path)
    assert again.events == LOG.events
    assert again.header == LOG.header
    head = json.loads(path.read_text().splitlines()[0])["header"]
    assert head["schema"] == SCHEMA


def test_old_schema_is_a_clear_error(tmp_path):
    text = LOG.dumps().replace(f'"schema": {SCHEMA}', '"schema": 0')
    with pytest.raises(LogFormatError, match="recorded with event schema 0; this labkit reads schema 1"):
        EventLog.loads(text)


@pytest.mark.parametrize("text,message", [
    ("", "is empty"), ("not json\n", "not a labkit event log"), ('{"a": 1}\n', "no labkit header"),
])
def test_not_a_log(text, message):
    with pytest.raises(LogFormatError, match=message):
        EventLog.loads(text)


def test_missing_file_says_how_to_record(tmp_path):
    with pytest.raises(LogFormatError, match="labkit record"):
        EventLog.load(tmp_path / "nope.jsonl")


def test_expect_ordered_partial_match():
    got = expect(LOG, [at("tc/egress", "lk-a0", storage_a="created"),
                       step("scrub", xnet=True, where="veth", same_skb=True),
                       at("tc/ingress", "lk-b0", storage_a="absent", same_skb=True),
                       at("cgroup_skb/ingress", storage_a="refused")])
    assert [e["seq"] for e in got] == [0, 1, 2, 4]


def test_expect_order_matters():
    with pytest.raises(ExpectationError):
        expect(LOG, [at("tc/ingress"), at("tc/egress")])


def test_expect_names_the_first_mismatch_and_what_was_seen():
    with pytest.raises(ExpectationError) as err:
        expect(LOG, [at("tc/egress", storage_a="created"), at("tc/ingress", "lk-b0", storage_a="present")])
    text = str(err.value)
    assert text.startswith("step 2 of 2 not seen after event 0: kind=hook, hook=tc/ingress")
    assert "storage_a=absent" in text  # what the kernel did instead


def test_expect_same_and_new_skb():
    expect(LOG, [step("clone"), at("cgroup_skb/ingress", new_skb=True)])
    with pytest.raises(ExpectationError):
        expect(LOG, [step("clone"), at("cgroup_skb/ingress", same_skb=True)])


def test_grouping_and_timeline():
    assert list(LOG.by_skb()) == ["0x1", "0x2"]
    assert LOG.packets() == [1]
    text = LOG.timeline()
    assert "skb_scrub_packet(xnet=1) from __dev_forward_skb2" in text
    assert "clone of skb1" in text


def test_record_decodes():
    raw = bytearray(RECORD_SIZE)
    raw[0:8] = (0xFFFF888000001234).to_bytes(8, "little")
    raw[80:84] = (3).to_bytes(4, "little")  # kind: scrub
    raw[104:108] = (1).to_bytes(4, "little")  # flags: xnet
    raw[176:181] = b"lk-a0"  # after state, value and err for 5 slots and a pad word
    raw[112 + 4 * 3] = 1  # state[3] (the metadata buffer): present
    r = Record.decode(bytes(raw))
    assert r.state[3] == "present" and len(r.value) == len(r.err) == 5
    assert (r.kind, r.skb, r.flags, r.ifname) == ("scrub", 0xFFFF888000001234, 1, "lk-a0")
    with pytest.raises(ValueError):
        Record.decode(b"\0" * 10)


def _record(kind, skb=0, ext=0, other=0, packet=0x1234, state4="absent", value4=0, err4=0, flags=0):
    return Record(kind=kind, skb=skb, t_ns=1000, other=other, ext=ext, stack=(), hook="", ifindex=0, netns=0,
                  packet=packet, mark=0, flags=flags, cpu=0, state=("absent",) * 4 + (state4,),
                  value=(0,) * 4 + (value4,), err=(0,) * 4 + (err4,), ifname="")


def test_design_records_become_events_that_name_their_skb():
    skb, clone = 0xFFFF888000001000, 0xFFFF888000002000
    records = [_record("meta_create", skb=skb, ext=0xA000), _record("meta_copy", skb=clone, ext=0xB000, other=0xA000),
               _record("meta_free", ext=0xB000), _record("meta_free", ext=0xA000),
               _record("gated_arm", skb=skb, value4=0x1234), _record("gated_copy", skb=clone, other=skb,
                                                                     state4="present", value4=0x1234),
               _record("gated_free", skb=clone, state4="present", value4=0x1234)]
    events = to_events(records, [0x1234], {})
    by = [(e["kind"], e.get("skb")) for e in events]
    assert by == [("meta_create", hex(skb)), ("meta_copy", hex(clone)), ("meta_free", hex(clone)),
                  ("meta_free", hex(skb)), ("gated_arm", hex(skb)), ("gated_copy", hex(clone)),
                  ("gated_free", hex(clone))]
    assert all(e["packet"] == 1 for e in events)
    assert events[1]["from"] == hex(0xA000) and events[1]["to"] == hex(0xB000)
    assert events[5]["parent"] == hex(skb) and events[5]["entry"] == 0x1234 and events[6]["reaped"] == 0x1234
