"""libbpf.so.1 through ctypes: the structs and constants the lab passes, ``lib()``
with the signatures it uses, libbpf's messages (kept for error details), and
the small helpers every libbpf object and attachment shares."""

import ctypes
import ctypes.util
import os
from ctypes import CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p

from labkit.errors import LabError

_lib = None
printed_lines = []
PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2

# enum bpf_attach_type values used by the lab (stable UAPI numbers)
BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
BPF_CGROUP_SOCK_OPS = 3
# enum bpf_prog_type / attach values for types libbpf 1.1 has no section for
BPF_PROG_TYPE_NETFILTER = 32
BPF_NETFILTER = 45


class bpf_test_run_opts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p), ("data_out", c_void_p),
        ("data_size_in", c_uint32), ("data_size_out", c_uint32),
        ("ctx_in", c_void_p), ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32), ("ctx_size_out", c_uint32),
        ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32),
        ("flags", c_uint32), ("cpu", c_uint32), ("batch_size", c_uint32),
    ]


class bpf_tc_hook(Structure):
    _fields_ = [("sz", c_size_t), ("ifindex", c_int), ("attach_point", c_int), ("parent", c_uint32),
                ("_pad", c_uint32)]


class bpf_tc_opts(Structure):
    _fields_ = [("sz", c_size_t), ("prog_fd", c_int), ("flags", c_uint32), ("prog_id", c_uint32),
                ("handle", c_uint32), ("priority", c_uint32), ("_pad", c_uint32)]


def print_cb(level, fmt, args):
    buf = ctypes.create_string_buffer(4096)
    libc().vsnprintf(buf, 4096, fmt, c_void_p(args))
    printed_lines.append(buf.value.decode(errors="replace"))
    del printed_lines[:-400]
    return 0


print_cb_c = PRINT_FN(print_cb)
_libc_handle = None


def libc():
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
        _libc_handle.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
    return _libc_handle


def lib():
    """libbpf.so.1 with the signatures the lab uses."""
    global _lib
    if _lib is not None:
        return _lib
    path = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        L = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError:
        try:
            L = ctypes.CDLL(path, use_errno=True)
        except OSError:
            raise LabError("libbpf.so.1 not found", fix="sudo apt-get install libbpf1") from None
    sig = {
        "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
        "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
        "bpf_program__name": (c_char_p, [c_void_p]),
        "bpf_program__section_name": (c_char_p, [c_void_p]),
        "bpf_program__set_autoload": (c_int, [c_void_p, c_bool]),
        "bpf_program__set_log_buf": (c_int, [c_void_p, c_void_p, c_size_t]),
        "bpf_program__set_type": (c_int, [c_void_p, c_int]),
        "bpf_program__set_expected_attach_type": (c_int, [c_void_p, c_int]),
        "bpf_program__set_flags": (c_int, [c_void_p, c_uint32]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_program__type": (c_int, [c_void_p]),
        "bpf_program__attach": (c_void_p, [c_void_p]),
        "bpf_program__attach_cgroup": (c_void_p, [c_void_p, c_int]),
        "bpf_program__attach_xdp": (c_void_p, [c_void_p, c_int]),
        "bpf_link__destroy": (c_int, [c_void_p]),
        "bpf_map__name": (c_char_p, [c_void_p]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__value_size": (c_uint32, [c_void_p]),
        "bpf_map__key_size": (c_uint32, [c_void_p]),
        "bpf_map__type": (c_int, [c_void_p]),
        "bpf_map__set_map_flags": (c_int, [c_void_p, c_uint32]),
        "bpf_map__map_flags": (c_uint32, [c_void_p]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_prog_test_run_opts": (c_int, [c_int, POINTER(bpf_test_run_opts)]),
        "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint32)]),
        "bpf_tc_hook_create": (c_int, [POINTER(bpf_tc_hook)]),
        "bpf_tc_hook_destroy": (c_int, [POINTER(bpf_tc_hook)]),
        "bpf_tc_attach": (c_int, [POINTER(bpf_tc_hook), POINTER(bpf_tc_opts)]),
        "bpf_tc_detach": (c_int, [POINTER(bpf_tc_hook), POINTER(bpf_tc_opts)]),
        "ring_buffer__new": (c_void_p, [c_int, SAMPLE_FN, c_void_p, c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__free": (None, [c_void_p]),
        "libbpf_set_print": (c_void_p, [PRINT_FN]),
        "libbpf_bpf_map_type_str": (c_char_p, [c_int]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype = res
        fn.argtypes = args
    L.libbpf_set_print(print_cb_c)
    _lib = L
    return L


def os_error(what, code=None) -> OSError:
    """The error a failed libbpf call left (code, or errno when it gave none), for the caller to raise."""
    code = abs(code) if code else ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def map_type_name(t: int) -> str:
    name = lib().libbpf_bpf_map_type_str(t)
    return f"BPF_MAP_TYPE_{name.decode().upper()}" if name else ("BPF_MAP_TYPE_SKB_STORAGE" if t == 34 else str(t))


class Closing:
    """``with`` closes it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
