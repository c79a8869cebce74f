"""Storage written at tc ingress is read at cgroup_skb ingress and by a
socket filter, on the same skb, and freed with it (labkit/runtime/basic.py)."""

import secrets

from labkit.runtime.basic import run_basic


def test_storage_travels_from_tc_to_cgroup_and_socket_filter():
    tokens = [secrets.randbits(31) | 0x40000000 for _ in range(4)]
    run = run_basic(tokens)
    assert run.received == tokens
    by_hook = {}
    for e in run.events:
        by_hook.setdefault(e.hook, []).append(e)
    writes = by_hook["tc/ingress"]
    assert [e.state for e in writes] == ["created"] * 4
    assert [e.token for e in writes] == tokens
    for hook in ("cgroup_skb/ingress", "socket_filter"):
        seen = by_hook[hook]
        assert [e.state for e in seen] == ["present"] * 4, f"{hook}: {seen}"
        assert [e.token for e in seen] == tokens, f"{hook} read other values than tc wrote"
        assert [e.writes for e in seen] == [1] * 4
        # the very same sk_buff, hook after hook
        assert [e.skb for e in seen] == [e.skb for e in writes]


def test_storage_is_freed_with_the_skb():
    tokens = [secrets.randbits(31) | 0x40000000 for _ in range(8)]
    run = run_basic(tokens)
    assert run.created == len(tokens)
    assert run.freed_after_recv == run.created, (
        f"{run.created} storages created, {run.freed_after_recv} freed after the socket consumed the packets")
