"""Attachments, each a context manager that removes exactly what it created: a
tracing, cgroup or XDP link; a tc filter (and the clsact qdisc, if it created
that), detached in the namespace it was added in; a ring buffer's reader."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import TYPE_CHECKING

from labkit.bpf.ffi import BPF_TC_EGRESS, BPF_TC_INGRESS, SAMPLE_FN, Closing, bpf_tc_hook, bpf_tc_opts, lib, os_error

if TYPE_CHECKING:
    from labkit.bpf.libbpf import Map, Program



class Link(Closing):
    def __init__(self, ptr, what):
        self.ptr = ptr
        self.what = what

    def close(self):
        if self.ptr:
            lib().bpf_link__destroy(self.ptr)
            self.ptr = None


def netns_ino():
    return os.stat("/proc/thread-self/ns/net").st_ino


class InNetns:
    """Run a block in the network namespace an fd refers to (then come back)."""

    def __init__(self, fd):
        self.fd = fd
        self.back = None

    def __enter__(self):
        if os.fstat(self.fd).st_ino != netns_ino():
            from labkit.guest.netns import interrupts_deferred, set_netns

            self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                with interrupts_deferred():  # a Ctrl-C lands after the switch, and switches back
                    set_netns(self.fd)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc):
        if self.back is not None:
            from labkit.guest.netns import interrupts_deferred, set_netns

            with interrupts_deferred():
                set_netns(self.back)
                os.close(self.back)
                self.back = None
        return False


class TcFilter(Closing):
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
            raise os_error(f"create clsact on ifindex {ifindex}", rc)
        self.created_qdisc = rc == 0
        self.opts = bpf_tc_opts(sz=ctypes.sizeof(bpf_tc_opts), prog_fd=prog.fd, priority=priority)
        rc = lib().bpf_tc_attach(ctypes.byref(self.hook), ctypes.byref(self.opts))
        if rc:
            self._drop_qdisc()
            os.close(self.netns)
            raise os_error(f"attach {prog.name} to tc on ifindex {ifindex}", rc)
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
        with InNetns(self.netns):
            if self.attached:
                detach = bpf_tc_opts(sz=ctypes.sizeof(bpf_tc_opts), handle=self.opts.handle,
                                     priority=self.opts.priority)
                lib().bpf_tc_detach(ctypes.byref(self.hook), ctypes.byref(detach))  # gone with its device is fine
                self.attached = False
            self._drop_qdisc()
        os.close(self.netns)
        self.netns = None


class RingBuffer(Closing):
    """Records from a BPF_MAP_TYPE_RINGBUF map, as bytes, in order.

    At most ``limit`` records are kept: past that the callback stops
    libbpf's consume loop (which otherwise runs for as long as programs
    keep producing, for ever in a packet loop) and ``overflow`` is set.
    """

    def __init__(self, m: Map, limit=200_000):
        self.records = []
        self.limit = limit
        self.overflow = False
        self._cb = SAMPLE_FN(self._sample)
        self.ptr = lib().ring_buffer__new(m.fd, self._cb, None, None)
        if not self.ptr:
            raise os_error(f"ring buffer on {m.name}")

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
