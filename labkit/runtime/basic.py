"""The first storage program, end to end (runs in the lab VM as root).

tc ingress on ``lo`` of a fresh namespace writes a token into skb storage;
cgroup_skb ingress and a socket filter on the receiving UDP socket read it
back (``bpf/storage_basic.bpf.c``). Used by ``labkit demo`` and the lab
tests; returns what the programs reported, the assertions are the caller's.
"""

import socket
import struct
from dataclasses import dataclass, field

from labkit.bpf.attach import RingBuffer
from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.guest.cgroup import Cgroup
from labkit.guest.netns import NetNS
from labkit.runtime.packets import payload
from labkit.runtime.records import Event, decode_all

SO_ATTACH_BPF = 50


@dataclass
class BasicRun:
    tokens: list
    events: list = field(default_factory=list)
    created: int = 0
    freed_before_recv: int = 0
    freed_after_recv: int = 0
    received: list = field(default_factory=list)


def _counters(obj):
    created, freed = struct.unpack_from("<QQ", obj.bss().lookup(b"\0\0\0\0"))
    return created, freed


def run_basic(tokens) -> BasicRun:
    run = BasicRun(list(tokens))
    with BpfObject(obj_path("storage_basic")) as obj, NetNS() as ns, Cgroup() as cg:
        ring = obj.own(RingBuffer(obj.map("events")))
        obj.own(obj.program("on_storage_free").attach())
        with ns.enter():
            lo = socket.if_nametoindex("lo")
            obj.own(obj.program("tc_writer").attach_tc(lo, ingress=True))
            obj.own(obj.program("cg_reader").attach_cgroup(cg.path))
            with cg.member():
                rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx, tx:
            rx.bind(("127.0.0.1", 0))
            rx.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, obj.program("sock_reader").fd)
            for token in run.tokens:
                tx.sendto(payload(token), rx.getsockname())
            ring.drain(200)
            run.created, run.freed_before_recv = _counters(obj)
            rx.settimeout(5)
            for _ in run.tokens:
                data = rx.recv(2048)
                run.received.append(struct.unpack_from("!I", data, 4)[0])
        ring.drain(100)
        _, run.freed_after_recv = _counters(obj)
        run.events = decode_all(ring.records)
    return run


def timeline(events: list[Event]) -> str:
    lines = []
    for e in events:
        what = e.state
        if e.state in ("present", "created"):
            what += f" token={e.token:#010x} writes={e.writes}"
        elif e.err:
            what += f" (delete said {e.err})"
        lines.append(f"  skb {e.skb & 0xffffff:06x}  {e.hook:<20} {what}")
    return "\n".join(lines)
