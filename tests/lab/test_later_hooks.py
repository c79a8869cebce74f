"""Storage written at tc ingress, read by program types that get the skb
from their hook rather than from a __sk_buff (bpf/later_hooks.bpf.c)."""

import socket
from contextlib import ExitStack

from labkit.bpf.attach import RingBuffer
from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.guest.cgroup import Cgroup
from labkit.guest.netns import NetNS
from labkit.runtime.packets import payload
from tests.lab.test_lifetime import events_of, tc


def later_hooks(*programs):
    return BpfObject(obj_path("later_hooks"), programs=list(programs))


def test_sock_ops_reads_the_storage_of_the_packet_tcp_parses(token):
    """BPF_SOCK_OPS_PARSE_HDR_OPT_CB runs from tcp_validate_incoming(), which
    a segment on TCP's header-prediction fast path skips: a plain data
    segment on an idle connection never reaches the program. An urgent
    (MSG_OOB) segment carries URG, fails the prediction and is parsed.
    """
    with ExitStack() as st:
        obj = st.enter_context(later_hooks("tc_writer", "sockops_reader"))
        ring = obj.own(RingBuffer(obj.map("events")))
        n = st.enter_context(NetNS())
        cg = st.enter_context(Cgroup())
        tc(obj, "tc_writer", n, "lo", True)
        obj.own(obj.program("sockops_reader").attach_cgroup(cg.path))
        with n.enter(), cg.member():
            srv = st.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            cli = st.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        cli.settimeout(5)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        st.enter_context(conn)
        conn.settimeout(5)
        plain = token ^ 0x5A5A5A5A
        cli.sendall(payload(plain))
        assert conn.recv(64)[4:8] == payload(plain)[4:8]
        plain_evs = events_of(ring, plain)
        cli.send(payload(token), socket.MSG_OOB)
        assert conn.recv(64)[4:8] == payload(token)[4:8]
        evs = events_of(ring, token, want=2)
    plain_kinds = [(e.hook, e.state) for e in plain_evs]
    assert plain_kinds == [("tc/ingress", "created")], f"fast-path segment: {plain_kinds}"
    kinds = [(e.hook, e.state) for e in evs]
    assert ("tc/ingress", "created") in kinds, kinds
    assert ("sock_ops", "present") in kinds, kinds
    written = next(e for e in evs if e.hook == "tc/ingress")
    parsed = next(e for e in evs if e.hook == "sock_ops")
    assert parsed.skb == written.skb and parsed.token == token


def test_kfree_skb_tracepoint_sees_the_storage_of_a_dropped_packet(token):
    with ExitStack() as st:
        obj = st.enter_context(later_hooks("tc_writer", "kfree_reader"))
        ring = obj.own(RingBuffer(obj.map("events")))
        obj.own(obj.program("kfree_reader").attach())
        n = st.enter_context(NetNS())
        tc(obj, "tc_writer", n, "lo", True)
        with n.enter():
            s = st.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.sendto(payload(token), ("127.0.0.1", 9))  # nobody listens: dropped, NO_SOCKET
        evs = events_of(ring, token, want=2)
    kinds = [(e.hook, e.state) for e in evs]
    assert kinds[:1] == [("tc/ingress", "created")], kinds
    dropped = [e for e in evs if e.hook == "kfree_skb"]
    assert len(dropped) == 1, kinds
    assert dropped[0].skb == evs[0].skb and dropped[0].token == token
