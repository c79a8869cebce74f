"""The observer object (bpf/observe.bpf.c) loaded with its lifecycle programs
and ring buffer, its maps emptied for a run; kept loaded between runs by a
long-lived worker (KEEP_LOADED)."""

from __future__ import annotations

import hashlib
from contextlib import ExitStack

from labkit.runtime.symbols import lifecycle_programs

HOOK_PROGRAMS = ("lab_tc_ingress", "lab_tc_egress", "lab_cgroup_ingress", "lab_sock_filter", "lab_tap_filter",
                 "lab_match")
MAP_WALK_LIMIT = 20000  # the observer's hash maps hold far fewer
_warm = None  # (path, BpfObject, RingBuffer) kept loaded by a long-lived worker
KEEP_LOADED = False


def observer(st: ExitStack, path, map_flags=None):
    """The observer object and its ring buffer, with empty maps.

    With KEEP_LOADED (the worker sets it) the object and its lifecycle
    programs stay loaded between runs: loading and verifying it is the
    slowest step of a run under TCG. Otherwise it goes with st. map_flags
    ({"storage_a": BPF map_flags}) are set before the load; other flags
    mean another load.
    """
    global _warm
    from labkit.bpf.attach import RingBuffer
    from labkit.bpf.libbpf import BpfObject

    map_flags = dict(map_flags or {})
    ident = (str(path), tuple(sorted(map_flags.items())))
    if KEEP_LOADED and _warm and _warm[0] == ident:
        _, obj, ring = _warm
        if ring is None:  # loaded by preload(), not attached yet
            ring = obj.own(RingBuffer(obj.map("events")))
            for prog in lifecycle_programs():
                obj.own(obj.program(prog).attach())
            _warm = (ident, obj, ring)
        del ring.records[:]
        ring.overflow = False
        ring.drain(0)
        for name in ("actions", "tracked", "stash", "gated", "meta_blocks"):
            clear_maps(obj.map(name))
        ring.drain(0)
        del ring.records[:]
        return obj, ring
    lifecycle = lifecycle_programs()
    obj = BpfObject(path, programs=list(HOOK_PROGRAMS + lifecycle), map_flags=map_flags)
    try:
        ring = obj.own(RingBuffer(obj.map("events")))
        for prog in lifecycle:
            obj.own(obj.program(prog).attach())
    except BaseException:
        obj.close()
        raise
    if KEEP_LOADED:
        if _warm:
            _warm[1].close()
        _warm = (ident, obj, ring)
    else:
        st.enter_context(obj)
    return obj, ring


def preload(path):
    """Load and verify the observer with default map flags, attaching nothing: a
    snapshot VM's warm Python does it before the snapshot, so that the workers
    forked from it find it loaded (its first ``observer()`` attaches it). Nothing
    runs until then: the programs are loaded, not attached."""
    global _warm
    from labkit.bpf.libbpf import BpfObject

    obj = BpfObject(path, programs=list(HOOK_PROGRAMS + lifecycle_programs()), map_flags={})
    _warm = ((str(path), ()), obj, None)


def clear_maps(m):
    """Empty a hash map, also while programs add and remove entries.

    Always deleting the first key is safe against concurrent deletes
    (get_next_key on a vanished key restarts the walk); the bound keeps a
    map that refills as fast as it empties from holding the run up.
    """
    key_size = {"actions": 12}.get(m.name, 8)
    for _ in range(MAP_WALK_LIMIT):
        try:
            key = m.get_next_key(None, key_size=key_size)
        except OSError:
            return
        try:
            m.delete(key)
        except OSError:
            pass


def series_id() -> str:
    from labkit import kernel

    h = hashlib.sha256()
    for p in kernel.series():
        h.update(p.read_bytes())
    return h.hexdigest()[:12]
