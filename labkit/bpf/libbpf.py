"""A thin ctypes layer over ``libbpf.so.1``: open, load, attach, read.

Used inside the lab VM (loading needs root and the lab kernel). Every
attachment is a context manager that removes exactly what it created:
a tc filter it added (and the clsact qdisc, if it created that), a cgroup
link, a tracing link.

A program the verifier rejects raises ``VerifierError``: the headline
names the program and the verifier's complaint, the details hold the last
verifier lines with the C source line they belong to (from BTF line info).

The parts that read on their own, beside it in ``labkit.bpf``: ``ffi`` (libbpf.so.1's
structs and signatures, ``lib()``, libbpf's messages), ``attach`` (the attachments:
``Link``, ``TcFilter``, ``RingBuffer``) and ``verifier`` (a verifier log as a
``VerifierError``, ``explain_log``).
"""

import ctypes
import os
import struct
from ctypes import c_uint32, c_void_p

from labkit.bpf.attach import Link, TcFilter
from labkit.bpf.ffi import BPF_TC_EGRESS, BPF_TC_INGRESS, Closing, bpf_test_run_opts, lib, os_error, printed_lines
from labkit.bpf.verifier import load_error
from labkit.errors import LabError

# ---- objects -----------------------------------------------------------------


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
            raise os_error(f"test run of {self.name}", rc)
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
            raise os_error(f"program info of {self.name}", rc)
        return struct.unpack_from("<QQ", buf.raw, self._RUN_TIME)

    def attach(self):
        """Auto-attach by section (tp_btf, fentry, lsm, kprobe): a Link."""
        link = lib().bpf_program__attach(self.ptr)
        if not link:
            raise os_error(f"attach {self.name} ({self.section})")
        return Link(link, f"{self.name} ({self.section})")

    def attach_cgroup(self, cgroup_path):
        fd = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            link = lib().bpf_program__attach_cgroup(self.ptr, fd)
            if not link:
                raise os_error(f"attach {self.name} to {cgroup_path}")
        finally:
            os.close(fd)
        return Link(link, f"{self.name} on {cgroup_path}")

    def attach_xdp(self, ifindex: int):
        """An XDP link on the device ifindex (of the caller's network namespace)."""
        link = lib().bpf_program__attach_xdp(self.ptr, ifindex)
        if not link:
            raise os_error(f"attach {self.name} as XDP on ifindex {ifindex}")
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
            raise os_error(f"set flags on {self.name}", rc)

    def lookup(self, key: bytes, value_size=None) -> bytes:
        val = ctypes.create_string_buffer(value_size or self.value_size)
        k = ctypes.create_string_buffer(key, len(key))
        if lib().bpf_map_lookup_elem(self.fd, k, val):
            raise os_error(f"lookup in {self.name}")
        return val.raw

    def update(self, key: bytes, value: bytes, flags=0):
        k = ctypes.create_string_buffer(key, len(key))
        v = ctypes.create_string_buffer(value, len(value))
        if lib().bpf_map_update_elem(self.fd, k, v, flags):
            raise os_error(f"update in {self.name}")

    def delete(self, key: bytes):
        k = ctypes.create_string_buffer(key, len(key))
        if lib().bpf_map_delete_elem(self.fd, k):
            raise os_error(f"delete in {self.name}")

    def get_next_key(self, key: bytes | None, key_size=4) -> bytes:
        k = ctypes.create_string_buffer(key, len(key)) if key is not None else None
        nk = ctypes.create_string_buffer(key_size)
        if lib().bpf_map_get_next_key(self.fd, k, nk):
            raise os_error(f"get_next_key in {self.name}")
        return nk.raw


class BpfObject(Closing):
    """One ``.bpf.o``: ``with BpfObject(path, programs=[...]) as obj: obj.program("x")``.

    programs: names to load (None: all). prog_types: {name: (prog_type,
    expected_attach_type)} for sections libbpf does not know. prog_flags:
    {name: BPF_F_* load flags} (BPF_F_TEST_STATE_FREQ: the verifier keeps
    a state at every branch).
    """

    LOG_SIZE = 1 << 22

    def __init__(self, path, *, programs=None, prog_types=None, prog_flags=None, map_flags=None, load=True):
        self.path = str(path)
        L = lib()
        self.ptr = L.bpf_object__open_file(self.path.encode(), None)
        if not self.ptr:
            raise LabError(f"libbpf could not open {self.path}: {os.strerror(ctypes.get_errno())}",
                           fix="run: labkit bpf build", details="\n".join(printed_lines[-10:]))
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
            if prog_flags and prog.name in prog_flags:  # BPF_F_TEST_STATE_FREQ and such, at load
                L.bpf_program__set_flags(p, prog_flags[prog.name])
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
        del printed_lines[:]
        rc = lib().bpf_object__load(self.ptr)
        if rc:
            err = load_error(self, rc)
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
