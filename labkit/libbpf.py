"""A thin ctypes layer over ``libbpf.so.1``: open, load, attach, read.

Used inside the lab VM (loading needs root and the lab kernel). Every
attachment is a context manager that removes exactly what it created:
a tc filter it added (and the clsact qdisc, if it created that), a cgroup
link, a tracing link.

A program the verifier rejects raises ``VerifierError``: the headline
names the program and the verifier's complaint, the details hold the last
verifier lines with the C source line they belong to (from BTF line info).
"""

import ctypes
import ctypes.util
import errno
import os
import re
import struct
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int, c_size_t, c_uint32,
                    c_uint64, c_void_p)

from labkit.errors import LabError, VerifierError

_lib = None
_printed = []
_PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

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


def _print_cb(level, fmt, args):
    buf = ctypes.create_string_buffer(4096)
    _libc().vsnprintf(buf, 4096, fmt, c_void_p(args))
    _printed.append(buf.value.decode(errors="replace"))
    del _printed[:-400]
    return 0


_print_cb_c = _PRINT_FN(_print_cb)
_libc_handle = None


def _libc():
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
        "ring_buffer__new": (c_void_p, [c_int, _SAMPLE_FN, c_void_p, c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__free": (None, [c_void_p]),
        "libbpf_set_print": (c_void_p, [_PRINT_FN]),
        "libbpf_bpf_map_type_str": (c_char_p, [c_int]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(L, name)
        fn.restype = res
        fn.argtypes = args
    L.libbpf_set_print(_print_cb_c)
    _lib = L
    return L


def _err(what, code=None):
    code = abs(code) if code else ctypes.get_errno()
    return OSError(code, f"{what}: {os.strerror(code)}")


def map_type_name(t: int) -> str:
    name = lib().libbpf_bpf_map_type_str(t)
    return f"BPF_MAP_TYPE_{name.decode().upper()}" if name else ("BPF_MAP_TYPE_SKB_STORAGE" if t == 34 else str(t))


# ---- objects -----------------------------------------------------------------


class _Closing:
    """``with`` closes it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Program:
    def __init__(self, obj, ptr):
        self.obj = obj
        self.ptr = ptr
        self.name = lib().bpf_program__name(ptr).decode()
        self.section = lib().bpf_program__section_name(ptr).decode()

    @property
    def fd(self) -> int:
        return lib().bpf_program__fd(self.ptr)

    def test_run(self, data: bytes = b"", repeat=1, ctx: bytes = None):
        """BPF_PROG_TEST_RUN: (return value, average ns per run, data out)."""
        out = ctypes.create_string_buffer(max(len(data), 1) + 256)
        inbuf = ctypes.create_string_buffer(data, len(data)) if data else None
        opts = bpf_test_run_opts(sz=ctypes.sizeof(bpf_test_run_opts), repeat=repeat)
        if inbuf is not None:
            opts.data_in = ctypes.cast(inbuf, c_void_p)
            opts.data_size_in = len(data)
            opts.data_out = ctypes.cast(out, c_void_p)
            opts.data_size_out = len(out)
        ctxbuf = None
        if ctx is not None:
            ctxbuf = ctypes.create_string_buffer(ctx, len(ctx))
            opts.ctx_in = ctypes.cast(ctxbuf, c_void_p)
            opts.ctx_size_in = len(ctx)
        rc = lib().bpf_prog_test_run_opts(self.fd, ctypes.byref(opts))
        if rc:
            raise _err(f"test run of {self.name}", rc)
        return opts.retval, opts.duration, out.raw[: opts.data_size_out]

    # struct bpf_prog_info: 232 bytes; id at 4, run_time_ns at 192, run_cnt at 200
    # (offsets from the lab kernel's BTF; stable UAPI since 5.1)
    _INFO_SIZE, _RUN_TIME, _RUN_CNT = 232, 192, 200

    def stats(self) -> tuple[int, int]:
        """(run_time_ns, run_cnt) the kernel has counted for this program;
        both stay 0 unless kernel.bpf_stats_enabled is 1."""
        buf = ctypes.create_string_buffer(self._INFO_SIZE)
        size = c_uint32(self._INFO_SIZE)
        rc = lib().bpf_obj_get_info_by_fd(self.fd, buf, ctypes.byref(size))
        if rc:
            raise _err(f"program info of {self.name}", rc)
        return struct.unpack_from("<QQ", buf.raw, self._RUN_TIME)

    def attach(self):
        """Auto-attach by section (tp_btf, fentry, lsm, kprobe): a Link."""
        link = lib().bpf_program__attach(self.ptr)
        if not link:
            raise _err(f"attach {self.name} ({self.section})")
        return Link(link, f"{self.name} ({self.section})")

    def attach_cgroup(self, cgroup_path):
        fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            link = lib().bpf_program__attach_cgroup(self.ptr, fd)
            if not link:
                raise _err(f"attach {self.name} to {cgroup_path}")
        finally:
            os.close(fd)
        return Link(link, f"{self.name} on {cgroup_path}")

    def attach_xdp(self, ifindex: int):
        """An XDP link on the device ifindex (of the caller's network namespace)."""
        link = lib().bpf_program__attach_xdp(self.ptr, ifindex)
        if not link:
            raise _err(f"attach {self.name} as XDP on ifindex {ifindex}")
        return Link(link, f"{self.name} (XDP on ifindex {ifindex})")

    def attach_tc(self, ifindex: int, ingress=True, priority=0):
        """A direct-action filter on the clsact hook (priority 0: the kernel picks)."""
        return TcFilter(self, ifindex, BPF_TC_INGRESS if ingress else BPF_TC_EGRESS, priority)


class Map:
    def __init__(self, obj, ptr):
        self.obj = obj
        self.ptr = ptr
        self.name = lib().bpf_map__name(ptr).decode()

    @property
    def fd(self) -> int:
        return lib().bpf_map__fd(self.ptr)

    @property
    def value_size(self) -> int:
        return lib().bpf_map__value_size(self.ptr)

    @property
    def key_size(self) -> int:
        return lib().bpf_map__key_size(self.ptr)

    @property
    def type(self) -> int:
        """enum bpf_map_type (1: hash, 9: LRU hash, 27: ring buffer, ...)."""
        return lib().bpf_map__type(self.ptr)

    @property
    def flags(self) -> int:
        """The map_flags the map is (or will be) created with."""
        return lib().bpf_map__map_flags(self.ptr)

    def set_flags(self, flags):
        rc = lib().bpf_map__set_map_flags(self.ptr, flags)
        if rc:
            raise _err(f"set flags on {self.name}", rc)

    def lookup(self, key: bytes, value_size=None) -> bytes:
        val = ctypes.create_string_buffer(value_size or self.value_size)
        k = ctypes.create_string_buffer(key, len(key))
        if lib().bpf_map_lookup_elem(self.fd, k, val):
            raise _err(f"lookup in {self.name}")
        return val.raw

    def update(self, key: bytes, value: bytes, flags=0):
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        if lib().bpf_map_update_elem(self.fd, k, v, flags):
            raise _err(f"update in {self.name}")

    def delete(self, key: bytes):
        k = ctypes.create_string_buffer(key, len(key))
        if lib().bpf_map_delete_elem(self.fd, k):
            raise _err(f"delete in {self.name}")

    def get_next_key(self, key: bytes | None, key_size=4) -> bytes:
        k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
        nk = ctypes.create_string_buffer(key_size)
        if lib().bpf_map_get_next_key(self.fd, k, nk):
            raise _err(f"get_next_key in {self.name}")
        return nk.raw


class BpfObject(_Closing):
    """One ``.bpf.o``: ``with BpfObject(path, programs=[...]) as obj: obj.program("x")``.

    programs: names to load (None: all). prog_types: {name: (prog_type,
    expected_attach_type)} for sections libbpf does not know.
    """

    LOG_SIZE = 1 << 22

    def __init__(self, path, *, programs=None, prog_types=None, map_flags=None, load=True):
        self.path = str(path)
        L = lib()
        self.ptr = L.bpf_object__open_file(self.path.encode(), None)
        if not self.ptr:
            raise LabError(f"libbpf could not open {self.path}: {os.strerror(ctypes.get_errno())}",
                           fix="run: labkit bpf build", details="\n".join(_printed[-10:]))
        self.programs = {}
        self.maps = {}
        self._logs = {}
        self._closers = []
        p = None
        while True:
            p = L.bpf_object__next_program(self.ptr, p)
            if not p:
                break
            prog = Program(self, p)
            self.programs[prog.name] = prog
            if programs is not None and prog.name not in programs:
                L.bpf_program__set_autoload(p, False)
                continue
            buf = ctypes.create_string_buffer(self.LOG_SIZE)
            self._logs[prog.name] = buf
            L.bpf_program__set_log_buf(p, buf, self.LOG_SIZE)
            if prog_types and prog.name in prog_types:
                ptype, atype = prog_types[prog.name]
                L.bpf_program__set_type(p, ptype)
                if atype is not None:
                    L.bpf_program__set_expected_attach_type(p, atype)
        if programs is not None:
            unknown = set(programs) - set(self.programs)
            if unknown:
                self.close()
                raise LabError(f"{self.path} has no program named {', '.join(sorted(unknown))}")
        m = None
        while True:
            m = L.bpf_object__next_map(self.ptr, m)
            if not m:
                break
            mp = Map(self, m)
            self.maps[mp.name] = mp
        if map_flags:
            for name, flags in map_flags.items():
                self.maps[name].set_flags(flags)
        self.loaded = False
        if load:
            self.load()

    def load(self):
        del _printed[:]
        rc = lib().bpf_object__load(self.ptr)
        if rc:
            err = VerifierError.from_log(self, rc)
            self.close()
            raise err
        self.loaded = True

    def log(self, name) -> str:
        buf = self._logs.get(name)
        return buf.value.decode(errors="replace") if buf is not None else ""

    def program(self, name) -> Program:
        return self.programs[name]

    def map(self, name) -> Map:
        return self.maps[name]

    def section(self, suffix=".bss"):
        """The map libbpf made for a global-variable section (.bss, .data), by name suffix."""
        for name, m in self.maps.items():
            if name.endswith(suffix):
                return m
        raise KeyError(suffix)

    def bss(self):
        return self.section(".bss")

    def own(self, closer):
        """Close closer (a context manager) when the object closes."""
        self._closers.append(closer)
        return closer

    def close(self):
        while self._closers:
            c = self._closers.pop()
            try:
                c.close()
            except OSError:
                pass
        if self.ptr:
            lib().bpf_object__close(self.ptr)
            self.ptr = None
        # The verifier log buffers are big (LOG_SIZE per program) and the
        # programs refer back to the object: free them now, not at the next
        # cycle collection (a process loading objects in a loop grew by tens
        # of MB per load until the guest ran out of memory).
        self._logs = {}
        self.programs = {}
        self.maps = {}


# ---- verifier errors ------------------------------------------------------------

_SRC_RE = re.compile(r"^; (.*?)(?: @ (\S+):(\d+))?$")


def explain_log(log: str, keep=12):
    """(headline, relevant lines) from a verifier log.

    The headline is the verifier's last complaint; the relevant lines are
    the last instructions before it, each preceded by the C source line
    (``file:line: code``) that BTF line info attaches to them.
    """
    lines = [ln for ln in log.splitlines() if ln.strip()]
    if not lines:
        return "no verifier log", []
    # The complaint: last line that is not a stats/summary line.
    tail = [ln for ln in lines if not ln.startswith(("processed ", "verification time", "stack depth",
                                                        "-- END PROG LOAD LOG --"))]
    headline = tail[-1] if tail else lines[-1]
    relevant, src_seen = [], None
    for ln in tail[-keep:]:
        m = _SRC_RE.match(ln)
        if m and m.group(2):
            src_seen = f"{os.path.basename(m.group(2))}:{m.group(3)}: {m.group(1).strip()}"
            relevant.append(src_seen)
        else:
            relevant.append("    " + ln)
    if src_seen is None:
        # Find the nearest source annotation above the window.
        for ln in reversed(tail[:-keep]):
            m = _SRC_RE.match(ln)
            if m and m.group(2):
                relevant.insert(0, f"{os.path.basename(m.group(2))}:{m.group(3)}: {m.group(1).strip()}")
                break
    return headline, relevant


def _from_log(cls, obj, rc):
    failed = None
    for name, buf in obj._logs.items():
        if buf.value:
            failed = name
    log = obj.log(failed) if failed else ""
    libbpf_lines = [ln.rstrip() for ln in _printed if ln.strip()]
    if not log:
        msg = next((ln for ln in reversed(libbpf_lines) if "libbpf:" in ln), f"load failed: {os.strerror(abs(rc))}")
        return LabError(f"{os.path.basename(obj.path)}: {msg.strip()}", fix="see the libbpf messages below",
                        details="\n".join(libbpf_lines[-15:]))
    headline, relevant = explain_log(log)
    src = next((r for r in reversed(relevant) if not r.startswith("    ")), None)
    where = f" at {src.split(': ', 1)[0]}" if src else ""
    err = cls(
        f"the verifier rejected {failed} ({os.path.basename(obj.path)}){where}: {headline.strip()}",
        fix="fix the C line shown; the verifier's own lines follow",
        details="\n".join(relevant),
    )
    err.program = failed
    err.log = log
    err.errno = abs(rc)
    return err


VerifierError.from_log = classmethod(_from_log)


# ---- attachments -----------------------------------------------------------------


class Link(_Closing):
    def __init__(self, ptr, what):
        self.ptr = ptr
        self.what = what

    def close(self):
        if self.ptr:
            lib().bpf_link__destroy(self.ptr)
            self.ptr = None


def _netns_ino():
    return os.stat("/proc/thread-self/ns/net").st_ino


class _InNetns:
    """Run a block in the network namespace an fd refers to (then come back)."""

    def __init__(self, fd):
        self.fd = fd
        self.back = None

    def __enter__(self):
        if os.fstat(self.fd).st_ino != _netns_ino():
            from labkit.netns import _setns, interrupts_deferred

            self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                with interrupts_deferred():  # a Ctrl-C lands after the switch, and switches back
                    _setns(self.fd)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc):
        if self.back is not None:
            from labkit.netns import _setns, interrupts_deferred

            with interrupts_deferred():
                _setns(self.back)
                os.close(self.back)
                self.back = None
        return False


class TcFilter(_Closing):
    """A tc filter on one clsact hook; the qdisc goes too if we added it.

    ifindex is resolved in the caller's current network namespace, which
    the filter remembers: closing it from elsewhere still detaches the
    right one.
    """

    def __init__(self, prog: Program, ifindex: int, point: int, priority: int = 0):
        self.netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self.hook = bpf_tc_hook(sz=ctypes.sizeof(bpf_tc_hook), ifindex=ifindex, attach_point=point)
        rc = lib().bpf_tc_hook_create(ctypes.byref(self.hook))
        if rc and rc != -errno.EEXIST:
            os.close(self.netns)
            raise _err(f"create clsact on ifindex {ifindex}", rc)
        self.created_qdisc = rc == 0
        self.opts = bpf_tc_opts(sz=ctypes.sizeof(bpf_tc_opts), prog_fd=prog.fd, priority=priority)
        rc = lib().bpf_tc_attach(ctypes.byref(self.hook), ctypes.byref(self.opts))
        if rc:
            self._drop_qdisc()
            os.close(self.netns)
            raise _err(f"attach {prog.name} to tc on ifindex {ifindex}", rc)
        self.attached = True

    def _drop_qdisc(self):
        if self.created_qdisc:
            hook = bpf_tc_hook(sz=ctypes.sizeof(bpf_tc_hook), ifindex=self.hook.ifindex,
                               attach_point=BPF_TC_INGRESS | BPF_TC_EGRESS)
            lib().bpf_tc_hook_destroy(ctypes.byref(hook))
            self.created_qdisc = False

    def close(self):
        if self.netns is None:
            return
        with _InNetns(self.netns):
            if self.attached:
                detach = bpf_tc_opts(sz=ctypes.sizeof(bpf_tc_opts), handle=self.opts.handle,
                                     priority=self.opts.priority)
                lib().bpf_tc_detach(ctypes.byref(self.hook), ctypes.byref(detach))  # gone with its device is fine
                self.attached = False
            self._drop_qdisc()
        os.close(self.netns)
        self.netns = None


class RingBuffer(_Closing):
    """Records from a BPF_MAP_TYPE_RINGBUF map, as bytes, in order.

    At most ``limit`` records are kept: past that the callback stops
    libbpf's consume loop (which otherwise runs for as long as programs
    keep producing, for ever in a packet loop) and ``overflow`` is set.
    """

    def __init__(self, m: Map, limit=200_000):
        self.records = []
        self.limit = limit
        self.overflow = False
        self._cb = _SAMPLE_FN(self._sample)
        self.ptr = lib().ring_buffer__new(m.fd, self._cb, None, None)
        if not self.ptr:
            raise _err(f"ring buffer on {m.name}")

    def _sample(self, ctx, data, size):
        if len(self.records) >= self.limit:
            self.overflow = True
            return -1
        self.records.append(ctypes.string_at(data, size))
        return 0

    def drain(self, timeout_ms=0):
        """Consume what is there (waiting up to timeout_ms for the first); return new records."""
        before = len(self.records)
        if self.overflow:
            return []
        if timeout_ms:
            lib().ring_buffer__poll(self.ptr, timeout_ms)
        lib().ring_buffer__consume(self.ptr)
        return self.records[before:]

    def close(self):
        if self.ptr:
            lib().ring_buffer__free(self.ptr)
            self.ptr = None

