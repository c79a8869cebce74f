"""The kfunc and map API of skb storage, on the lab kernel.

Each kfunc rule runs as a tc program under BPF_PROG_TEST_RUN, which builds
a real sk_buff from a test frame, runs the program on it and frees it.
"""

import errno
import struct

import pytest

from labkit.bpf.build import obj_path
from labkit.bpf.libbpf import BpfObject
from labkit.errors import VerifierError
from labkit.runtime.packets import udp_frame

BPF_F_NO_PREALLOC = 1
BPF_F_CLONE = 1 << 9
BPF_F_SKB_KEEP_TUNNEL = 1 << 19  # the lab kernel's UAPI (patch 0006)
BPF_F_SKB_KEEP_NETNS = 1 << 20


def run_api(prog, token):
    with BpfObject(obj_path("api"), programs=[prog]) as obj:
        retval, _, _ = obj.program(prog).test_run(udp_frame(token))
        assert retval == 0
        return struct.unpack("<8q", obj.bss().lookup(b"\0\0\0\0"))


def test_get_without_create_on_fresh_skb_is_null(token):
    res = run_api("get_without_create", token)
    assert res[1] == 1, "the program did not run"
    assert res[0] == 1, "get without F_CREATE returned storage on a fresh skb"


def test_create_zero_fills(token):
    found, tok, writes, t_ns = run_api("create_zero_fills", token)[:4]
    assert found == 1
    assert (tok, writes, t_ns) == (0, 0, 0)


def test_create_copies_initial_value(token):
    found, tok, writes, t_ns = run_api("create_copies_init", token)[:4]
    assert found == 1
    assert (tok, writes, t_ns) == (token, 7, 99)


def test_write_then_read_back(token):
    found, tok, writes, same = run_api("write_then_read", token)[:4]
    assert found == 1
    assert (tok, writes) == (token, 3)
    assert same == 1, "a second get returned a different value pointer"


def test_delete_then_enoent(token):
    first, second, gone, recreated = run_api("delete_twice", token)[:4]
    assert first == 0
    assert second == -errno.ENOENT
    assert gone == 1
    assert recreated == 1


def test_unknown_flag_returns_null_and_creates_nothing(token):
    plain, with_create, delete = run_api("unknown_flag", token)[:3]
    assert plain == 1 and with_create == 1
    assert delete == -errno.ENOENT, "an unknown flag bit still created storage"


def test_two_maps_are_independent(token):
    deleted, other_token, first_gone = run_api("two_maps", token)[:3]
    assert deleted == 0
    assert other_token == 2
    assert first_gone == 1


def test_wrong_map_type_is_rejected_naming_the_type():
    with pytest.raises(VerifierError) as exc:
        BpfObject(obj_path("fail/wrong_map_type"))
    err = exc.value
    assert "cannot pass map_type 1 into func bpf_skb_storage_get" in err.log
    assert "BPF_MAP_TYPE_SKB_STORAGE" in err.message
    assert "wrong_map_type.bpf.c:" in err.details, "no C source line next to the verifier lines"


def test_missing_null_check_is_rejected():
    with pytest.raises(VerifierError) as exc:
        BpfObject(obj_path("fail/no_null_check"))
    assert "map_value_or_null" in exc.value.message
    assert "no_null_check.bpf.c:" in exc.value.details


def test_an_initial_value_of_the_wrong_size_is_rejected_naming_both_sizes():
    """It was accepted, and a bigger value silently became its first bytes (lesson 04: &opt, sizeof(opt))."""
    with pytest.raises(VerifierError) as exc:
        BpfObject(obj_path("fail/init_size"))
    assert ("cannot pass an initial value of 8 bytes into func bpf_skb_storage_get: the map's value is 4 bytes"
            in exc.value.log)
    assert "init_size.bpf.c:" in exc.value.details


@pytest.mark.parametrize("flags,ok", [
    (BPF_F_NO_PREALLOC, True),
    (0, False),
    (BPF_F_NO_PREALLOC | BPF_F_CLONE, True),
    (BPF_F_NO_PREALLOC | BPF_F_SKB_KEEP_TUNNEL, True),
    (BPF_F_NO_PREALLOC | BPF_F_SKB_KEEP_NETNS, True),
    (BPF_F_NO_PREALLOC | BPF_F_CLONE | BPF_F_SKB_KEEP_TUNNEL | BPF_F_SKB_KEEP_NETNS, True),
    (BPF_F_SKB_KEEP_TUNNEL, False),           # still needs BPF_F_NO_PREALLOC
    (BPF_F_NO_PREALLOC | 1 << 21, False),     # a bit no skb storage knows
], ids=["no_prealloc", "none", "clone", "keep_tunnel", "keep_netns", "all", "keep_without_no_prealloc", "unknown"])
def test_map_creation_flags(flags, ok):
    if ok:
        with BpfObject(obj_path("api"), programs=["get_without_create"], map_flags={"storage": flags}):
            return
    with pytest.raises(Exception) as exc:
        BpfObject(obj_path("api"), programs=["get_without_create"], map_flags={"storage": flags})
    assert "Invalid argument" in str(exc.value) or "-22" in exc.value.details


def test_syscall_ops_are_not_supported():
    with BpfObject(obj_path("api"), programs=["get_without_create"]) as obj:
        m = obj.map("storage")
        key = struct.pack("<i", 0)
        value = bytes(m.value_size)
        for op in (lambda: m.lookup(key), lambda: m.update(key, value), lambda: m.delete(key),
                   lambda: m.get_next_key(None)):
            with pytest.raises(OSError) as exc:
                op()
            assert exc.value.errno == errno.EOPNOTSUPP, exc.value
