"""Lifetime rules with real packets: clones, veth and netns crossings, tunnels.

Writers and observers come from bpf/lifetime.bpf.c. Every event carries the
sk_buff's address, so "absent" below is said of the very skb that had the
storage a moment before, not of some other packet.
"""

import socket
import struct
import time
from contextlib import ExitStack

import pytest

from labkit.bpf.attach import RingBuffer
from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.guest.netns import NetNS, sh
from labkit.runtime.packets import payload, udp_frame
from labkit.runtime.records import decode_all

ETH_P_ALL = 0x0003


def lifetime(*programs):
    return BpfObject(obj_path("lifetime"), programs=list(programs))


def events_of(ring, token, want=None, wait_ms=300):
    """The events about token: after wait_ms, or once there are want of them
    (waiting up to 5 s, then 50 ms more for any that would follow)."""
    deadline = time.monotonic() + (5.0 if want else wait_ms / 1000)
    while True:
        ring.drain(50)
        evs = [e for e in decode_all(ring.records) if token in (e.pkt_token, e.token)]
        if want and len(evs) >= want:
            ring.drain(50)
            return [e for e in decode_all(ring.records) if token in (e.pkt_token, e.token)]
        if time.monotonic() > deadline:
            return evs


def send_raw(ns, dev, frame):
    """Transmit frame out of dev in ns through an AF_PACKET socket (tc egress runs)."""
    with ns.enter():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    with s:
        s.bind((dev, 0))
        s.send(frame)


def tc(obj, prog, ns, dev, ingress):
    """Attach prog at dev's tc hook inside ns; the object detaches it on close."""
    with ns.enter():
        return obj.own(obj.program(prog).attach_tc(socket.if_nametoindex(dev), ingress=ingress))


def set_clone_target(obj, ifindex):
    """Point clone_writer's bpf_clone_redirect() at ifindex (clone_cfg.ifindex in .data)."""
    data = obj.section(".data")
    raw = bytearray(data.lookup(b"\0\0\0\0"))
    raw[0:4] = struct.pack("<I", ifindex)
    data.update(b"\0\0\0\0", bytes(raw))


def clone_ret(obj):
    """What bpf_clone_redirect() answered last (clone_cfg.ret)."""
    return struct.unpack_from("<q", obj.section(".data").lookup(b"\0\0\0\0"), 8)[0]


def veth(a_ns, a, b_ns, b):
    sh("ip", "link", "add", a, "netns", a_ns.name, "type", "veth", "peer", "name", b, "netns", b_ns.name)
    a_ns.ip("link", "set", a, "up")
    b_ns.ip("link", "set", b, "up")


# ---- netns and veth crossings -------------------------------------------------


def dummy(n, held):
    """lk-dmy0 in n; with held, a plug qdisc keeps what is sent out of it
    (its limit is in bytes: room for plenty of packets)."""
    n.ip("link", "add", "lk-dmy0", "type", "dummy")
    n.ip("link", "set", "lk-dmy0", "up")
    if held:
        n.run("tc", "qdisc", "add", "dev", "lk-dmy0", "root", "plug", "limit", "1000000")


def bridged(n, br_netfilter):
    """lk-s0 -- lk-p0, a port of bridge lk-br0 (10.97.0.1/24), with
    br_netfilter on or off, and a held lk-dmy0 to clone to."""
    veth(n, "lk-s0", n, "lk-p0")
    n.ip("link", "add", "lk-br0", "type", "bridge")
    n.ip("link", "set", "lk-p0", "master", "lk-br0")
    n.ip("addr", "add", "10.97.0.1/24", "dev", "lk-br0")
    n.ip("link", "set", "lk-br0", "up")
    dummy(n, True)
    n.run("sh", "-c", f"echo {int(br_netfilter)} > /proc/sys/net/bridge/bridge-nf-call-iptables")


@pytest.mark.parametrize("same_netns", [False, True], ids=["into-another-netns", "inside-one-netns"])
def test_dropped_across_veth(token, same_netns):
    """Into another netns and, with skb_scrub_packet(skb, xnet=false), inside one."""
    with ExitStack() as st:
        obj = st.enter_context(lifetime("writer_egress", "observe_ingress"))
        ring = obj.own(RingBuffer(obj.map("events")))
        a = st.enter_context(NetNS())
        b = a if same_netns else st.enter_context(NetNS())
        veth(a, "lk-a0", b, "lk-b0")
        tc(obj, "writer_egress", a, "lk-a0", False)
        tc(obj, "observe_ingress", b, "lk-b0", True)
        send_raw(a, "lk-a0", udp_frame(token))
        evs = events_of(ring, token, want=2)
    assert [(e.hook, e.state) for e in evs] == [("tc/egress", "created"), ("tc/ingress", "absent")]
    assert evs[0].skb == evs[1].skb, "veth delivered another skb than it was given"
    assert evs[1].err == -2


# ---- clones ---------------------------------------------------------------------


@pytest.mark.parametrize("held", [True, False], ids=["clone-held-in-queue", "clone-freed-at-once"])
def test_clone_redirect_shares_the_extension(token, held):
    """bpf_clone_redirect(): the clone sees no storage; the original is
    refused while the clone lives (held by a plug qdisc), and has its
    storage back once the clone is gone (a dummy device frees it at once).
    """
    with ExitStack() as st:
        obj = st.enter_context(lifetime("clone_writer", "observe_egress"))
        ring = obj.own(RingBuffer(obj.map("events")))
        n = st.enter_context(NetNS())
        dummy(n, held)
        set_clone_target(obj, n.ifindex("lk-dmy0"))
        tc(obj, "clone_writer", n, "lo", True)
        tc(obj, "observe_egress", n, "lk-dmy0", False)
        with n.enter():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.sendto(payload(token), ("127.0.0.1", 9))
        evs = events_of(ring, token, want=3)
        answered = clone_ret(obj)
    assert answered == 0, f"bpf_clone_redirect answered {answered}"
    kinds = [(e.hook, e.state) for e in evs]
    original = [e for e in evs if e.hook in ("tc/ingress", "after_clone")]
    clone = [e for e in evs if e.hook == "tc/egress"]
    assert kinds[0] == ("tc/ingress", "created"), kinds
    assert len(clone) == 1 and clone[0].skb != original[0].skb
    assert clone[0].state == "refused" and clone[0].err == -95, "the clone did not share the extension"
    after = next(e for e in evs if e.hook == "after_clone")
    assert after.skb == original[0].skb
    if held:
        assert after.state == "refused", f"original while the clone is queued: {after}"
        assert after.err == -95
    else:
        assert after.state == "present" and after.token == token, f"original after the clone was freed: {after}"


# ---- tunnels ----------------------------------------------------------------------

UNDER_A, UNDER_B = "10.99.0.1", "10.99.0.2"
INNER_A, INNER_B = "10.98.0.1", "10.98.0.2"


def tunnel_pair(st, kind):
    """netns A and B joined by veth, with a tunnel device lk-t of kind in each."""
    a = st.enter_context(NetNS())
    b = st.enter_context(NetNS())
    veth(a, "lk-ua", b, "lk-ub")
    a.ip("addr", "add", f"{UNDER_A}/24", "dev", "lk-ua")
    b.ip("addr", "add", f"{UNDER_B}/24", "dev", "lk-ub")
    for ns, local, remote, inner in ((a, UNDER_A, UNDER_B, INNER_A), (b, UNDER_B, UNDER_A, INNER_B)):
        if kind in ("gre", "ipip"):
            ns.ip("link", "add", "lk-t", "type", kind, "local", local, "remote", remote, "ttl", "64")
        elif kind == "vxlan":
            ns.ip("link", "add", "lk-t", "type", "vxlan", "id", "42", "local", local, "remote", remote,
                  "dstport", "4789")
        elif kind == "geneve":
            ns.ip("link", "add", "lk-t", "type", "geneve", "id", "42", "remote", remote)
        ns.ip("addr", "add", f"{inner}/24", "dev", "lk-t")
        ns.ip("link", "set", "lk-t", "up")
    # No ARP in the way of the first packet: static neighbours.
    a.ip("neigh", "replace", UNDER_B, "lladdr", b.mac("lk-ub"), "dev", "lk-ua")
    b.ip("neigh", "replace", UNDER_A, "lladdr", a.mac("lk-ua"), "dev", "lk-ub")
    if kind in ("vxlan", "geneve"):
        a.ip("neigh", "replace", INNER_B, "lladdr", b.mac("lk-t"), "dev", "lk-t")
    return a, b


def send_udp(ns, dst, token):
    with ns.enter():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with s:
        s.sendto(payload(token), (dst, 9))


# direction -> (writer, its netns and device, observer, its netns and device, tc hook side)
TUNNEL_PATHS = {
    # Storage on the inner packet (tunnel device egress) is gone from the
    # outer packet (underlay egress): the tunnel's xmit path scrubs the skb.
    "encap": ("writer_egress", "a", "lk-t", "observe_egress", "a", "lk-ua", "tc/egress"),
    # Storage on the outer packet (underlay ingress) is gone from the inner
    # packet (tunnel device ingress): the tunnel's receive path scrubs it.
    "decap": ("writer_ingress", "b", "lk-ub", "observe_ingress", "b", "lk-t", "tc/ingress"),
}


@pytest.mark.parametrize("direction", ["encap", "decap"])
@pytest.mark.parametrize("kind", ["gre", "ipip", "vxlan", "geneve"])
def test_dropped_by_tunnel(token, kind, direction):
    writer, w_ns, w_dev, observer, o_ns, o_dev, hook = TUNNEL_PATHS[direction]
    with ExitStack() as st:
        obj = st.enter_context(lifetime(writer, observer))
        ring = obj.own(RingBuffer(obj.map("events")))
        ns = dict(zip("ab", tunnel_pair(st, kind)))
        tc(obj, writer, ns[w_ns], w_dev, hook == "tc/ingress")
        tc(obj, observer, ns[o_ns], o_dev, hook == "tc/ingress")
        send_udp(ns["a"], INNER_B, token)
        evs = events_of(ring, token, want=2)
    kinds = [(e.hook, e.state) for e in evs]
    assert kinds[:1] == [(hook, "created")], kinds
    later = [e for e in evs[1:] if e.ifindex != evs[0].ifindex]
    assert later, f"{kind} {direction}: the packet never reached {o_dev}: {kinds}"
    assert later[0].state == "absent", f"{kind}: storage survived {direction}: {later[0]}"
    assert later[0].skb == evs[0].skb, f"{kind} {direction} went on with another skb instead of scrubbing this one"


# ---- extension copy-on-write ---------------------------------------------------------


@pytest.mark.parametrize("br_netfilter", [False, True], ids=["shared", "copied-on-write"])
def test_extension_copy_on_write_leaves_the_storage_behind(token, br_netfilter):
    """A clone shares the extension block; when br_netfilter adds its own
    extension (SKB_EXT_BRIDGE_NF) to the original, skb_ext_maybe_cow() gives
    the original a private copy, and that copy does not carry the storage:
    the original sees it "absent" instead of "refused". The storage stays
    with the clone's block and is freed once, with it.
    """
    from labkit.guest.cgroup import Cgroup

    with ExitStack() as st:
        obj = st.enter_context(lifetime("clone_writer", "observe_cgroup", "on_storage_free"))
        ring = obj.own(RingBuffer(obj.map("events")))
        obj.own(obj.program("on_storage_free").attach())
        n = st.enter_context(NetNS())
        cg = st.enter_context(Cgroup())
        bridged(n, br_netfilter)
        set_clone_target(obj, n.ifindex("lk-dmy0"))
        tc(obj, "clone_writer", n, "lk-p0", True)
        obj.own(obj.program("observe_cgroup").attach_cgroup(cg.path))
        with n.enter(), cg.member():
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with rx:
            rx.bind(("10.97.0.1", 0))
            rx.settimeout(5)
            frame = udp_frame(token, src="10.97.0.2", dst="10.97.0.1", dport=rx.getsockname()[1],
                              src_mac=n.mac("lk-s0"), dst_mac=n.mac("lk-br0"))
            send_raw(n, "lk-s0", frame)
            rx.recv(2048)
            evs = events_of(ring, token, want=3)
            n.run("tc", "qdisc", "del", "dev", "lk-dmy0", "root")  # frees the held clone
            time.sleep(0.2)
            freed = struct.unpack("<Q", obj.bss().lookup(b"\0\0\0\0")[:8])[0]
    kinds = [(e.hook, e.state) for e in evs]
    assert kinds[:2] == [("tc/ingress", "created"), ("after_clone", "refused")], kinds
    at_socket = [e for e in evs if e.hook == "cgroup_skb/ingress"]
    assert len(at_socket) == 1 and at_socket[0].skb == evs[0].skb, kinds
    if br_netfilter:
        assert (at_socket[0].state, at_socket[0].err) == ("absent", -2), at_socket[0]
    else:
        assert (at_socket[0].state, at_socket[0].err) == ("refused", -95), at_socket[0]
    assert freed == 1, f"the storage was freed {freed} times"
