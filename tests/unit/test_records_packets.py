"""The record contract with the BPF programs, and hand-built test packets."""

import re
import socket
import struct

import pytest

from labkit import paths
from labkit.runtime.packets import csum, ipv4_udp, payload, udp_frame
from labkit.runtime.records import EVENT_SIZE, HOOKS, LAB_MAGIC, STATES, Event


def test_event_round_trip():
    e = Event(0xFFFF8880DEADBEEF, 123456789, "cgroup_skb/ingress", 3, "refused", 0, 0, -95, 7, 0xABCD)
    raw = e.encode()
    assert len(raw) == EVENT_SIZE == 48
    assert Event.decode(raw) == e


def test_short_record_is_an_error():
    with pytest.raises(ValueError):
        Event.decode(b"\0" * 10)


def test_header_and_python_agree():
    header = (paths.BPF_DIR / "include" / "lab_records.h").read_text()
    magic = int(re.search(r"#define LAB_MAGIC (0x[0-9a-f]+)", header).group(1), 16)
    assert magic == LAB_MAGIC
    assert struct.pack(">I", LAB_MAGIC) == b"LKSB"
    hooks = dict((int(v), k) for k, v in re.findall(r"LAB_HOOK_(\w+) = (\d+)", header))
    assert set(hooks) == set(HOOKS)
    states = dict((int(v), k) for k, v in re.findall(r"LAB_(ABSENT|PRESENT|REFUSED|CREATED|FAILED) = (\d+)", header))
    assert {k: v.lower() for k, v in states.items()} == STATES
    fields = re.search(r"struct lab_event \{(.*?)\};", header, re.S).group(1)
    assert len(re.findall(r"__[us]64", fields)) * 8 + len(re.findall(r"__[us]32", fields)) * 4 == EVENT_SIZE


def test_lab_record_matches_the_header():
    from labkit.runtime.records import KINDS, RECORD_SIZE, SLOTS, STACK

    header = (paths.BPF_DIR / "include" / "lab_records.h").read_text()
    kinds = {int(v): k.lower() for k, v in re.findall(r"LAB_K_(\w+) = (\d+)", header)}
    assert kinds == KINDS
    assert int(re.search(r"#define LAB_SLOTS (\d+)", header).group(1)) == len(SLOTS)
    assert int(re.search(r"#define LAB_STACK (\d+)", header).group(1)) == STACK
    body = re.search(r"struct lab_record \{(.*?)\};", header, re.S).group(1)
    size = 0
    for typ, arr in re.findall(r"(__[us]64|__[us]32|char) \w+(?:\[(\w+)\])?;", body):
        consts = {"LAB_SLOTS": len(SLOTS), "LAB_STACK": STACK}
        n = consts[arr] if arr in consts else int(arr or 1)
        size += n * {"char": 1}.get(typ, 8 if "64" in typ else 4)
    assert size == RECORD_SIZE == 192


def test_payload_carries_magic_and_token():
    p = payload(0x12345678, size=40)
    assert len(p) == 40
    assert struct.unpack("!II", p[:8]) == (LAB_MAGIC, 0x12345678)


def test_ipv4_header_checksum_is_valid():
    pkt = ipv4_udp("10.0.0.1", "10.0.0.2", 1000, 2000, b"hi")
    assert csum(pkt[:20]) == 0
    assert socket.inet_ntoa(pkt[12:16]) == "10.0.0.1"
    assert struct.unpack("!HH", pkt[20:24]) == (1000, 2000)


def test_frame_puts_the_token_where_tc_looks():
    frame = udp_frame(0xCAFEF00D)
    # Ethernet 14 + IPv4 20 + UDP 8 = offset 42, as in lab_packet_token()
    assert struct.unpack("!II", frame[42:50]) == (LAB_MAGIC, 0xCAFEF00D)
