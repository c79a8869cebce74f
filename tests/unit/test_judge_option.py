"""Exercise 04 judges the GENEVE option as the wire carried it (the lab's probe at tc ingress
of the underlay): its class, a length field of one 4-byte word, and the note as its data."""

from labkit.course.tunnels import judge_option
from labkit.runtime.events import EventLog


def log(length, data=0x1234ABCD, cls=0xFF01, total=2):
    wire = cls << 48 | total << 40 | length << 32 | data
    return EventLog([
        {"seq": 0, "kind": "report", "tag": "written", "packet": 1, "skb": "0xa", "value": 0x1234ABCD},
        {"seq": 1, "kind": "report", "tag": "wire", "packet": None, "skb": "0xb", "value": wire},
        {"seq": 2, "kind": "report", "tag": "value", "packet": 1, "skb": "0xb", "value": 0x1234ABCD},
    ], {"tokens": [7]})


def test_one_word_of_data_with_the_note_passes():
    ok, lines = judge_option(log(1))
    assert ok, lines


def test_a_wrong_length_field_fails_even_when_the_note_arrives():
    for bad in (0, 2, 3):
        ok, lines = judge_option(log(bad, total=1 + bad))
        assert not ok and "length field is" in lines[0]


def test_wrong_class_data_or_no_option_fail():
    assert not judge_option(log(1, cls=0x0101))[0]
    assert not judge_option(log(1, data=0x1))[0]
    assert "no options" in judge_option(log(1, total=0))[1][0]


def test_the_note_may_travel_in_either_byte_order():
    assert judge_option(log(1, data=0xCDAB3412))[0]
