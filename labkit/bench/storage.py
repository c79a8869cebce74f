"""What per-packet data costs, measured the RFC's way, in the lab VM.

Runs as root in the guest: ``python -m labkit.bench.run [--packets N]
[--repeats R] [--json FILE]`` (benchmarks/storage_cost.py and lesson 09
start it through the lab VM). With ``kernel.bpf_stats_enabled=1`` the
kernel times every BPF program run; a design's cost per packet is its
programs' ``run_time_ns / run_cnt`` over real UDP traffic through a veth
into another namespace:

- writers at tc ingress of the receiving veth, readers at cgroup_skb
  ingress of the receiving socket (data_meta: XDP writes, tc reads);
- one design at a time, in a rotated order in each repeat, the counter-only
  floor among them, so every ratio compares programs timed in one run;
- where the kernel has a second skb storage implementation
  (``kernel.bpf_skb_storage_inline``), skb storage runs once with each.

The unit is the guest clock's: nanoseconds, or guest instructions where the
lab VM counts them (``Lab(clock="icount")``, which puts ``labkit.clock=icount``
on the kernel command line); the results say which (``clock``, ``unit``) and
keep the key ``ns`` for the figure either way (``labkit.bench.run`` adds them).
``--designs`` runs some designs only (the floor always), among them the
calibration programs (CALIBRATION).

Then ``BPF_PROG_TEST_RUN`` times the same tc, cgroup_skb and XDP programs
on one frame, ``repeat`` times over (what that measures differs: see
REPORT_NOTES). Every program counts what it saw; a design whose readers did
not find what the writers wrote is reported as broken, not timed.

Everything a run makes has a name of the benchmark's own (namespaces
``lk-bench_tx``/``lk-bench_rx`` with their veth and hooks, the cgroup
``lk-bench`` with its programs) and a run holds a lock while it runs (one
benchmark per VM). A Ctrl-C (SIGINT) tears it all down and puts the kernel
settings back; a run that was killed leaves them, and the next run removes
them (and restores the settings it saved) before it starts. How a run
reports its end to the host: ``labkit.bench.run``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import time
from contextlib import ExitStack

from labkit.bench.designs import (
    CALIBRATION,
    COUNT,
    DESIGNS,
    INLINE,
    TEST_RUN,
    BenchError,
    inline_available,
    plan,
    summarise,
)

STATS = "/proc/sys/kernel/bpf_stats_enabled"
NS_TX, NS_RX = "bench_tx", "bench_rx"
TX_IP, RX_IP, PORT = "10.77.0.1", "10.77.0.2", 47000
PAYLOAD = 64

# What the benchmark leaves while it runs, all its own: a run that was killed leaves them, and the
# next run removes them before it starts (sweep_leftovers).
CGROUP = "lk-bench"
LINKS = ("lk-btx", "lk-brx")
LOCK = "/run/lk-bench.lock"            # held while a benchmark runs in this VM
SAVED = "/run/lk-bench.settings.json"  # the kernel settings a running benchmark changed, to restore
INTERRUPT_GRACE = 60.0                 # s the benchmark gets to tear down after a Ctrl-C
# Packets between two readings of the programs' statistics. A repeat's figure for a program is the
# median over these chunks: an interrupt that lands inside a program run adds its handler's work to
# that run (about 3000 instructions for a timer tick under icount), which moves one chunk, not it.
CHUNK = 100
def _write(path, value):
    with open(path, "w") as fh:
        fh.write(str(value))


def _read(path):
    with open(path) as fh:
        return fh.read().strip()


def hold_lock():
    """This VM's benchmark lock (released when the process ends, however it ends); a BenchError when
    another benchmark holds it, so one run never sweeps what a running one built."""
    import fcntl

    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BenchError("another benchmark is running in this lab VM",
                         fix="wait for it to finish (or interrupt it), then run this again") from None
    return fd


def sweep_leftovers() -> list:
    """Remove what an earlier benchmark left in this VM (its namespaces with their veth and tc and
    XDP hooks, its cgroup with the programs attached to it) and put back the kernel settings it
    changed. Only the benchmark's own names; call it holding the lock."""
    from pyroute2 import netns as prnetns

    from labkit.guest.cgroup import ROOT, remove
    from labkit.guest.netns import sh

    done = []
    for ns in (NS_TX, NS_RX):
        if os.path.exists(f"/run/netns/lk-{ns}"):
            prnetns.remove(f"lk-{ns}")
            done.append(f"deleted netns lk-{ns}")
    for link in LINKS:  # only ever inside those namespaces; in the root one after a bad interrupt
        if os.path.exists(f"/sys/class/net/{link}"):
            sh("ip", "link", "del", link, check=False)
            done.append(f"deleted link {link}")
    if os.path.isdir(os.path.join(ROOT, CGROUP)):
        remove(os.path.join(ROOT, CGROUP))
        done.append(f"removed cgroup {CGROUP}")
    if os.path.exists(SAVED):
        with open(SAVED) as fh:
            saved = json.load(fh)
        _restore(saved)
        os.unlink(SAVED)
        done.append(f"restored kernel.bpf_stats_enabled={saved['stats']}"
                    + (f" and kernel.bpf_skb_storage_inline={saved['inline']}" if saved.get("inline") else ""))
    return done


def _restore(saved):
    _write(STATS, saved["stats"])
    if saved.get("inline") is not None and inline_available():
        _write(INLINE, saved["inline"])


class Bench:
    """designs: names from DESIGNS and CALIBRATION to run ("skb_storage" for both implementations,
    "skb_storage:plain" or ":inline" for one), None for every design in DESIGNS; the floor runs
    always, and the BPF_PROG_TEST_RUN figures come with a run of every design only."""

    def __init__(self, packets=2000, repeats=5, progress=None, designs=None):
        self.packets, self.repeats = packets, repeats
        self.progress = progress or (lambda msg: None)
        self.designs = designs

    # -- set-up ------------------------------------------------------------------------------

    def _topology(self, st):
        """Two namespaces and a veth between them (the runtime builds it, and removes it with st); a
        sending socket in one, the receiving socket in the other, made in the benchmark's cgroup."""
        from pyroute2 import netns as prnetns

        from labkit.runtime.parts import Topology, Veth
        from labkit.runtime.topology import build_topology

        topo = Topology(netns=(NS_TX, NS_RX), veths=(Veth(NS_TX, "lk-btx", NS_RX, "lk-brx", f"{TX_IP}/24",
                                                           f"{RX_IP}/24"),))
        self.rx_ifindex = build_topology(st, topo).ifindex(NS_RX, "lk-brx")
        self.tx = prnetns.create_socket(f"lk-{NS_TX}", socket.AF_INET, socket.SOCK_DGRAM, flags=0)
        st.callback(self.tx.close)
        with self.cgroup.member():
            self.rx = prnetns.create_socket(f"lk-{NS_RX}", socket.AF_INET, socket.SOCK_DGRAM, flags=0)
        st.callback(self.rx.close)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.rx.bind((RX_IP, PORT))
        self.rx.setblocking(False)

    def _attach(self, st, prog, where):
        from labkit.runtime.topology import in_netns

        p = self.obj.program(prog)
        if where == "tc":
            with in_netns(f"lk-{NS_RX}"):
                st.callback(p.attach_tc(self.rx_ifindex, ingress=True, priority=1).close)
        elif where == "xdp":
            with in_netns(f"lk-{NS_RX}"):
                st.callback(p.attach_xdp(self.rx_ifindex).close)
        elif where == "cgroup":
            st.callback(p.attach_cgroup(self.cgroup.path).close)
        else:
            st.callback(p.attach().close)

    # -- traffic -----------------------------------------------------------------------------

    def _drain(self):
        n = 0
        while True:
            try:
                self.rx.recv(2048)
                n += 1
            except BlockingIOError:
                return n

    def _send(self, count):
        data = b"\xab" * PAYLOAD
        got = 0
        for i in range(count):
            self.tx.sendto(data, (RX_IP, PORT))
            if i % 128 == 127:
                got += self._drain()
        deadline = time.monotonic() + 2
        while got < count and time.monotonic() < deadline:
            got += self._drain()
            time.sleep(0.005)
        return got

    def _counts(self):
        m = self.obj.map("counts")
        out = {}
        for prog, i in COUNT.items():
            raw = m.lookup(struct.pack("<I", i), value_size=24 * os.cpu_count())
            vals = [struct.unpack_from("<QQQ", raw, 24 * c) for c in range(len(raw) // 24)]
            out[prog] = tuple(sum(v[k] for v in vals) for k in range(3))
        return out

    # -- one design --------------------------------------------------------------------------

    def _one(self, design, variant=None):
        progs = {**DESIGNS, **CALIBRATION}[design]
        self.obj = self.objs[variant]
        if variant is not None:
            _write(INLINE, variant)
        with ExitStack() as st:
            for _, prog, where in progs:
                self._attach(st, prog, where)
            self._send(64)  # warm up: first-use allocations, caches
            stats = lambda: {prog: self.obj.program(prog).stats() for _, prog, _ in progs}  # noqa: E731
            counts0, prev = self._counts(), stats()
            got, wall, chunks = 0, 0.0, []
            for start in range(0, self.packets, CHUNK):
                t0 = time.monotonic()
                got += self._send(min(CHUNK, self.packets - start))
                wall += time.monotonic() - t0
                now = stats()
                chunks.append({prog: (now[prog][0] - prev[prog][0], now[prog][1] - prev[prog][1]) for prog in now})
                prev = now
            counts1 = self._counts()
        out = {"received": got, "wall_s": round(wall, 3), "programs": {}}
        for role, prog, _ in progs:
            dt, dn = sum(c[prog][0] for c in chunks), sum(c[prog][1] for c in chunks)
            per_chunk = [c[prog][0] / c[prog][1] for c in chunks if c[prog][1]]
            c = [b - a for a, b in zip(counts0[prog], counts1[prog])]
            out["programs"][prog] = {"role": role, "runs": dn, "time_ns": dt, "mean_ns": round(dt / dn, 1) if dn else None,
                                     "ns": statistics.median(per_chunk) if per_chunk else None,
                                     "seen": c[0], "found": c[1], "failed": c[2]}
        return out

    # -- the whole run -----------------------------------------------------------------------

    def run(self) -> dict:
        from labkit.bpf.build import obj_path
        from labkit.bpf.libbpf import BpfObject
        from labkit.guest.cgroup import Cgroup

        if not os.path.exists(STATS):
            raise BenchError("this kernel has no kernel.bpf_stats_enabled", fix="boot the lab kernel: labkit vm run")
        runs = plan(self.designs)
        samples = {}
        with ExitStack() as st:
            st.callback(os.close, hold_lock())
            swept = sweep_leftovers()
            if swept:
                self.progress("removed what an earlier benchmark left: " + "; ".join(swept))
            old_stats = _read(STATS)
            old_inline = _read(INLINE) if inline_available() else None
            self.cgroup = st.enter_context(Cgroup(CGROUP))
            self._topology(st)
            with open(SAVED, "w") as fh:  # for the next run to restore, should this one be killed
                json.dump({"stats": old_stats, "inline": old_inline}, fh)
            st.callback(os.unlink, SAVED)
            st.callback(_restore, {"stats": old_stats, "inline": old_inline})
            # The verifier inlines skb storage lookups only into programs loaded while the knob is 1
            # (patch 0010): each implementation gets programs loaded under its own knob value.
            # Designs without a knob value use the optimised implementation's programs.
            self.objs = {}
            for variant in ("0", "1") if inline_available() else (None,):
                if variant is not None:
                    _write(INLINE, variant)
                self.objs[variant] = st.enter_context(BpfObject(obj_path("bench")))
            self.objs.setdefault(None, self.objs.get("1"))
            _write(STATS, 1)
            for rep in range(self.repeats):
                order = runs[rep % len(runs):] + runs[:rep % len(runs)]
                for design, variant in order:
                    name = design if variant is None else f"{design}:{'inline' if variant == '1' else 'plain'}"
                    self.progress(f"repeat {rep + 1}/{self.repeats}: {name}")
                    samples.setdefault(name, []).append(self._one(design, variant))
            self.obj = self.objs[None]
            test_runs = self._test_runs() if self.designs is None else {}
        return summarise(samples, test_runs, self.packets, self.repeats)

    def _test_runs(self, repeat=20000):
        from labkit.runtime.packets import udp_frame

        frame = udp_frame(0x1234, src=TX_IP, dst=RX_IP, dport=PORT, size=PAYLOAD)
        out = {}
        for prog in TEST_RUN:
            p = self.obj.program(prog)
            data = frame[14:] if prog.endswith("_r") and prog != "bench_meta_r" else frame  # cgroup_skb: from IP
            try:
                durations = [p.test_run(data, repeat=repeat)[1] for _ in range(3)]
            except OSError as exc:
                out[prog] = {"error": str(exc)}
                continue
            out[prog] = {"ns": statistics.median(durations), "runs": durations, "repeat": repeat}
        return out
