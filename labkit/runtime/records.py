"""Python's side of ``bpf/include/lab_records.h``: decode what programs report."""

import struct
from dataclasses import dataclass

LAB_MAGIC = 0x4C4B5342

HOOKS = {1: "tc/ingress", 2: "tc/egress", 3: "cgroup_skb/ingress", 4: "socket_filter", 5: "after_clone",
         6: "sock_ops", 7: "kfree_skb", 8: "af_packet", 9: "consume_skb"}
HOOK_IDS = {v: k for k, v in HOOKS.items()}
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


# ---- the runtime's records: struct lab_record ---------------------------------------

KINDS = {1: "hook", 2: "clone", 3: "scrub", 4: "free", 5: "storage_free", 6: "stash_clean", 7: "storage_alloc",
         8: "tp_create", 9: "tp_clone", 10: "tp_scrub", 11: "tp_free",
         12: "meta_create", 13: "meta_copy", 14: "meta_scrub", 15: "meta_free",
         16: "gated_arm", 17: "gated_copy", 18: "gated_scrub", 19: "gated_free"}
SCRUB_REASONS = {0: "forward", 1: "netns", 2: "tunnel"}  # enum skb_scrub_reason
SLOTS = ("storage_a", "storage_b", "stash", "meta", "gated")
STACK = 6
# u64 skb, t_ns, other, ext, stack[6]; u32 kind, hook, ifindex, netns, packet,
# mark, flags, cpu; u32 state[5], value[5]; s32 err[5]; u32 pad; char ifname[16]
_RECORD = struct.Struct("<QQQQ6Q8I5I5I5iI16s")
RECORD_SIZE = _RECORD.size
# struct lab_point: u32 netns, ifindex, hook
POINT = struct.Struct("<III")
# struct lab_action: u32 write, del, mark, clone_ifindex, redirect_peer, value[5]
ACTION = struct.Struct("<5I5I")


@dataclass(frozen=True)
class Record:
    """One struct lab_record, decoded; labkit.runtime.events turns it into an event."""

    kind: str
    skb: int
    t_ns: int
    other: int
    ext: int
    stack: tuple
    hook: str
    ifindex: int
    netns: int
    packet: int
    mark: int
    flags: int
    cpu: int
    state: tuple
    value: tuple
    err: tuple
    ifname: str

    @classmethod
    def decode(cls, raw: bytes) -> "Record":
        if len(raw) < RECORD_SIZE:
            raise ValueError(f"lab_record is {RECORD_SIZE} bytes, got {len(raw)}")
        f = _RECORD.unpack_from(raw)
        skb, t_ns, other, ext = f[0:4]
        stack = tuple(a for a in f[4:10] if a)
        kind, hook, ifindex, netns, packet, mark, flags, cpu = f[10:18]
        n = len(SLOTS)
        state = tuple(STATES.get(x, str(x)) for x in f[18:18 + n])
        value, err = tuple(f[18 + n:18 + 2 * n]), tuple(f[18 + 2 * n:18 + 3 * n])
        ifname = f[19 + 3 * n].split(b"\0", 1)[0].decode(errors="replace")
        return cls(KINDS.get(kind, str(kind)), skb, t_ns, other, ext, stack, HOOKS.get(hook, "") if hook else "",
                   ifindex, netns, packet, mark, flags, cpu, state, value, err, ifname)
