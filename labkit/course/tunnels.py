"""The tunnel exercises' checks: 04 carries a note across GENEVE in a tunnel
option, 08 picks the map flags that keep it through a tunnel and a namespace.

Like every check (``labkit.course.checking``), they run the learner's programs on
the lab kernel and judge the event log: the notes are random numbers only
the packet knows, and 04 also reads the option as the wire carries it, with
a probe of the lab's own at tc ingress of the underlay (``WIRE_PROBE``).
"""

from __future__ import annotations

from dataclasses import replace

from labkit.course.checking import Verdict, cell_ready, checked, reports, run_with
from labkit.errors import LabError


def _notes_arrived(log, writer, lost, arrived, prefix=""):
    """Per packet: did the note the writer reported ("written") reach cg_read ("value"), or was it
    lost ("absent")? A lost note names the scrub that dropped it when the kernel's tracepoint said so."""
    lines, ok = [], True
    for p in range(1, len(log.header.get("tokens", [])) + 1):
        written = [e["value"] for e in reports(log, "written") if e.get("packet") == p]
        came = [e for e in reports(log) if e.get("packet") == p and e.get("tag") in ("value", "absent")]
        dropped = [e for e in log if e["kind"] == "storage_scrub" and e.get("packet") == p
                   and e.get("map") not in ("storage_a", "storage_b") and not e.get("kept")]
        if not written:
            ok = False
            lines.append(f"{prefix}packet {p}: {writer} wrote no note (keep it as given)")
        elif not came:
            ok = False
            lines.append(f"{prefix}packet {p}: never reached cgroup_skb ingress in lk-b (dropped on the way?)")
        elif came[0]["tag"] == "absent":
            ok = False
            where = f": the {dropped[0]['reason']} scrub in {dropped[0]['where']}() dropped it" if dropped else ""
            lines.append(f"{prefix}packet {p}: wrote {written[0]:#010x}{lost}{where}")
        elif came[0]["value"] != written[0]:
            ok = False
            lines.append(f"{prefix}packet {p}: wrote {written[0]:#010x}, arrived {came[0]['value']:#010x}")
        else:
            lines.append(f"{prefix}packet {p}: {written[0]:#010x} {arrived}")
    return ok, lines


# ---- 04: carry a value across a GENEVE tunnel ------------------------------------------


def geneve_external(lab):
    """The GENEVE tunnel scenario with collect_md devices: your programs set the tunnel key."""
    sc = lab.scenario("tunnel", kind="geneve", create="before_encap")
    topo = replace(sc.topology, tunnels=tuple(replace(t, external=True) for t in sc.topology.tunnels))
    return replace(sc, name="tunnel", topology=topo, expect=(), description="GENEVE (external), your key and option")


# tc ingress of lk-b0 in lk-b: the outer packet's first GENEVE option as the wire carries it, in
# one report: option class << 48 | total options length (4-byte words) << 40 | the option's
# length field << 32 | its first 4 bytes of data (as the program's struct had them).
WIRE_PROBE = r"""
#include "lab_user.h"

char LICENSE[] SEC("license") = "GPL";

#define NEXT (-1)	/* TC_ACT_UNSPEC: the other programs on the hook run as before */

SEC("tc")
int geneve_wire(struct __sk_buff *ctx)
{
	__u8 ver_ihl, proto, g[16];
	__u16 dport;
	__u32 off, data;

	if (bpf_skb_load_bytes(ctx, 14, &ver_ihl, 1) || bpf_skb_load_bytes(ctx, 23, &proto, 1) || proto != 17)
		return NEXT;
	off = 14 + (ver_ihl & 0xf) * 4;
	if (off > 74 || bpf_skb_load_bytes(ctx, off + 2, &dport, 2) || dport != bpf_htons(6081))
		return NEXT;
	if (bpf_skb_load_bytes(ctx, off + 8, g, sizeof(g)))
		return NEXT;
	__builtin_memcpy(&data, &g[12], 4);
	lab_report(ctx, LAB_REPORT_WIRE, (__u64)(g[8] << 8 | g[9]) << 48 | (__u64)(g[0] & 0x3f) << 40 |
		   (__u64)(g[11] & 0x1f) << 32 | data);
	return NEXT;
}
"""


def wire_probe():
    from labkit.course.bpfcell import compile_cell

    probe = compile_cell("lab_geneve_wire", WIRE_PROBE)
    if not probe.ok:
        raise LabError("the lab's GENEVE probe does not compile", fix="report it: this is the lab's bug",
                       details=probe.error or "")
    return probe


def judge_option(log, cls=0xFF01):
    """Each packet's GENEVE option as the wire carried it: the class, a length field of one 4-byte
    word (the option's data is one __u32) and that data being the note written. (ok, lines)"""
    lines, ok = [], True
    wire = reports(log, "wire")
    for p in range(1, len(log.header.get("tokens", [])) + 1):
        written = [e["value"] for e in reports(log, "written") if e.get("packet") == p]
        came = [e for e in reports(log, "value") if e.get("packet") == p]
        mine = [w for w in wire if came and w["skb"] == came[0]["skb"]] or wire[p - 1:p]
        if not written or not mine:
            continue
        v = mine[0]["value"]
        opt_class, total, length, data = v >> 48, (v >> 40) & 0x3F, (v >> 32) & 0x1F, v & 0xFFFFFFFF
        if total == 0:
            ok = False
            lines.append(f"packet {p}: the GENEVE header on the wire had no options")
        elif opt_class != cls:
            ok = False
            lines.append(f"packet {p}: the first option on the wire has class {opt_class:#06x}, not {cls:#06x}")
        elif length != 1:
            ok = False
            lines.append(f"packet {p}: the option's length field is {length}; it counts the 4-byte words of data "
                         "after the option header, and the note is one")
        elif written[0] not in (data, int.from_bytes(data.to_bytes(4, "little"), "big")):  # either byte order
            ok = False
            lines.append(f"packet {p}: the option carried {data:#010x} on the wire, not the note {written[0]:#010x}")
        else:
            lines.append(f"packet {p}: on the wire, option class {opt_class:#06x}, length 1, data {data:#010x}")
    return ok, lines


@checked("04")
def carry_across_tunnel(lab, cell):
    """tc_encap (tc egress of lk-t in lk-a) writes a random note and sets the tunnel key; your code
    carries the note in a GENEVE option; tc_decap (tc ingress of lk-t in lk-b) re-creates it;
    cg_read reports what arrives at cgroup_skb ingress. The lab's probe reads the option on the wire."""
    bad = cell_ready("04", cell, ("tc_encap", "tc_decap", "cg_read"))
    if bad:
        return bad
    log = run_with(lab, geneve_external(lab), [cell.at("tc_encap", "tc/egress", "a/lk-t"),
                                            cell.at("tc_decap", "tc/ingress", "b/lk-t"),
                                            cell.at("cg_read", "cgroup_skb/ingress", "b"),
                                            wire_probe().at("geneve_wire", "tc/ingress", "b/lk-b0")], count=3)
    ok, lines = _notes_arrived(log, "tc_encap", lost=" before encapsulation; after decapsulation the packet had "
                                                       "no note", arrived="carried across encapsulation and decapsulation")
    wire_ok, wire_lines = judge_option(log)
    return Verdict("04", ok and wire_ok, "the note survives the tunnel" if ok and wire_ok else
                   "the note did not make it across" if not ok else "the note arrives, but the option is not "
                   "what the GENEVE header says it is", lines + wire_lines)


# ---- 08: the flags that carry a note through a tunnel -----------------------------------


@checked("08")
def keep_through_tunnel(lab, cell):
    """tc_note (tc egress of lk-t in lk-a, before encapsulation) writes a random note into your map;
    cg_read (cgroup_skb ingress in lk-b) reports what arrives. Your map's flags decide. The tunnel
    is GRE in one run and VXLAN in another, three packets each."""
    bad = cell_ready("08", cell, ("tc_note", "cg_read"))
    if bad:
        return bad
    lines, ok = [], True
    for kind in ("gre", "vxlan"):
        sc = replace(lab.scenario("tunnel", kind=kind, create="before_encap"), expect=())
        log = run_with(lab, sc, [cell.at("tc_note", "tc/egress", "a/lk-t"),
                              cell.at("cg_read", "cgroup_skb/ingress", "b")], count=3)
        good, more = _notes_arrived(log, "tc_note", lost=", nothing arrived",
                                    arrived="arrived, the same skb storage all the way", prefix=f"{kind} ")
        ok, lines = ok and good, lines + more
    arrived, extra = ok, _extra_flags(cell, "notes", needed=("keep_tunnel", "keep_netns"))
    if extra:
        ok = False
        lines.append(f"notes also has {', '.join(extra)}, which nothing on this path needs (no clone on it): "
                     "give it the flags the note needs and no others")
    return Verdict("08", ok, "the note crosses the tunnel and the namespace" if ok else
                   "the note arrives, but with a flag it does not need" if arrived else
                   "the note did not reach the socket", lines)


def _extra_flags(cell, name, needed):
    """The lab's map flags a map of the cell's object is created with beyond the needed ones."""
    from labkit.bpf.libbpf import BpfObject
    from labkit.runtime.parts import FLAG_NAMES, MAP_FLAGS

    with BpfObject(cell.obj, load=False) as o:
        flags = o.maps[name].flags if name in o.maps else 0
    return [FLAG_NAMES[n] for n, bit in MAP_FLAGS.items() if flags & bit and n not in needed]
