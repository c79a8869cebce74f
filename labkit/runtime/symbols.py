"""What the running kernel offers the runtime: its symbols (naming the callers in
a record's stack) and, from its BTF, which functions and tracepoints it has, so
which lifecycle programs the observer attaches."""

from __future__ import annotations

import bisect

LIFECYCLE = ("lab_on_clone_entry", "lab_on_clone", "lab_on_scrub", "lab_on_release", "lab_on_kfree_skbmem",
             "lab_stash_kfree", "lab_stash_consume")
STORAGE_KPROBES = ("lab_on_storage_free", "lab_on_storage_alloc")  # kernels without the tracepoints
STORAGE_TRACEPOINTS = ("lab_tp_create", "lab_tp_clone", "lab_tp_scrub", "lab_tp_free")
META_TRACEPOINTS = ("lab_meta_create", "lab_meta_copy", "lab_meta_scrub", "lab_meta_free")  # patch 0011
GATED_TRACEPOINTS = ("lab_gated_copy", "lab_gated_scrub", "lab_gated_free")  # patch 0012


class Symbols:
    """/proc/kallsyms, for naming the callers of skb_scrub_packet and skb_clone."""

    _cache = None

    def __init__(self):
        addrs, names = [], []
        with open("/proc/kallsyms") as fh:
            for line in fh:
                a, t, name = line.split()[:3]
                if t in "tTwW":
                    addrs.append(int(a, 16))
                    names.append(name)
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self.addrs = [addrs[i] for i in order]
        self.names = [names[i] for i in order]
        end = [a for a, n in zip(addrs, names) if n == "_etext"]
        self.etext = end[0] if end else None

    @classmethod
    def get(cls):
        if cls._cache is None:
            cls._cache = cls()
        return cls._cache

    def name(self, addr: int) -> str:
        if self.etext and addr >= self.etext and addr < self.etext + (1 << 30):
            return "bpf_jit"  # past the kernel's text: a BPF program or trampoline
        i = bisect.bisect_right(self.addrs, addr) - 1
        return self.names[i] if i >= 0 and self.addrs[i] else hex(addr)


SKIP_FRAMES = ("skb_scrub_packet", "skb_clone", "kfree_skbmem", "skb_release_head_state", "skb_release_all",
               "__skb_ext_put", "skb_ext_put", "bpf_skb_storage_free", "bpf_selem_alloc", "bpf_local_storage_update",
               "bpf_jit", "bpf_trampoline", "bpf_prog", "__bpf_prog", "kprobe", "ftrace", "arch_ftrace", "fentry",
               "bpf_trace_run", "bpf_skb_storage_scrub", "trace_skb_storage", "__skb_gated", "skb_gated",
               "__traceiter", "trace_skb_ext_bpf")


def name_callers(stack):
    syms = Symbols.get()
    names = [syms.name(a) for a in stack]
    out = [n for n in names if not n.startswith(SKIP_FRAMES)]
    return out


def kernel_has(*names: str) -> bool:
    """Whether the running kernel's BTF names all of these (functions,
    tracepoints as btf_trace_<name>, types)."""
    global _btf_text
    if _btf_text is None:
        try:
            with open("/sys/kernel/btf/vmlinux", "rb") as fh:
                _btf_text = fh.read()
        except OSError:
            _btf_text = b""
    return all(b"\0" + n.encode() + b"\0" in _btf_text for n in names)


_btf_text = None


def storage_tracepoints() -> bool:
    """The bpf_skb_storage lifecycle tracepoints (kernel patch 0007) are there."""
    return kernel_has("btf_trace_skb_storage_create", "btf_trace_skb_storage_scrub")


def lifecycle_programs() -> tuple:
    """The observer's lifecycle programs for the running kernel."""
    progs = LIFECYCLE + (STORAGE_TRACEPOINTS if storage_tracepoints() else STORAGE_KPROBES)
    if kernel_has("skb_scrub_packet_reason"):
        progs += ("lab_on_scrub_reason",)
    if kernel_has("btf_trace_skb_ext_bpf_create", "btf_trace_skb_ext_bpf_free"):
        progs += META_TRACEPOINTS
    if kernel_has("btf_trace_skb_free", "btf_trace_skb_copy", "btf_trace_skb_scrub"):
        progs += GATED_TRACEPOINTS
    return progs
