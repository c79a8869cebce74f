"""Python's side of ``bpf/include/lab_records.h``: decode what programs report."""

import struct
from dataclasses import dataclass

LAB_MAGIC = 0x4C4B5342

HOOKS = {1: "tc/ingress", 2: "tc/egress", 3: "cgroup_skb/ingress", 4: "socket_filter", 5: "after_clone",
         6: "sock_ops", 7: "kfree_skb"}
STATES = {0: "absent", 1: "present", 2: "refused", 3: "created", 4: "failed"}

# struct lab_event: u64 skb, u64 t_ns, u32 hook, ifindex, state, token, writes,
# s32 err, u32 mark, pkt_token
_EVENT = struct.Struct("<QQIIIIIiII")
EVENT_SIZE = _EVENT.size
# struct lab_value: u32 token, u32 writes, u64 t_ns
VALUE = struct.Struct("<IIQ")


@dataclass(frozen=True)
class Event:
    skb: int
    t_ns: int
    hook: str
    ifindex: int
    state: str
    token: int
    writes: int
    err: int
    mark: int
    pkt_token: int

    @classmethod
    def decode(cls, raw: bytes) -> "Event":
        if len(raw) < EVENT_SIZE:
            raise ValueError(f"lab_event is {EVENT_SIZE} bytes, got {len(raw)}")
        skb, t_ns, hook, ifindex, state, token, writes, err, mark, pkt = _EVENT.unpack_from(raw)
        return cls(skb, t_ns, HOOKS.get(hook, str(hook)), ifindex, STATES.get(state, str(state)),
                   token, writes, err, mark, pkt)

    def encode(self) -> bytes:
        hook = {v: k for k, v in HOOKS.items()}[self.hook]
        state = {v: k for k, v in STATES.items()}[self.state]
        return _EVENT.pack(self.skb, self.t_ns, hook, self.ifindex, state, self.token, self.writes,
                           self.err, self.mark, self.pkt_token)


def decode_all(records) -> list[Event]:
    return [Event.decode(r) for r in records]
