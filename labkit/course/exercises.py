"""The lessons' exercise checks: your work runs on the lab kernel, the event
log is judged, never the text of your code.

Each check plants something a hard-coded answer cannot know (fresh random
tokens in every packet, the time a value was written, a thousand packets)
and says what it expected and what the kernel did instead. In replay mode
a check says it needs the live lab. The verdict is shown in the notebook
and carried in the output's metadata (``labkit_check``), which is how the
notebook tests tell a passing check from a failing one. Every verdict is
also appended to the learner's own ``progress.jsonl`` in their labkit cache
(what a workshop's instructor view reads).
"""

from __future__ import annotations

from labkit.course.checking import CHECKS, Verdict, cell_ready, checked, reports, run_with

# ---- 01: a timestamp from tc ingress to the socket --------------------------------------


@checked("01")
def first_storage(lab, cell):
    """tc_stamp (tc ingress on lk-b0) keeps the time in skb storage; sock_delay
    (socket filter on the receiving socket) reports now minus that time."""
    log = stamp_run(lab, "01", cell)
    if isinstance(log, Verdict):
        return log
    ok, lines = judge_delays(log, log.packets())
    return Verdict("01", ok, "every delivered packet reports its own delay" if ok else
                   "not every packet reported a believable delay", lines)


def stamp_run(lab, exercise, cell):
    """Five packets through ``basic`` with the cell's tc_stamp at tc ingress of lk-b0 and sock_delay
    on the receiving socket (exercises 01 and 10): the log, or a Verdict when there is nothing to judge."""
    bad = cell_ready(exercise, cell, ("tc_stamp", "sock_delay"))
    if bad:
        return bad
    log = run_with(lab, lab.scenario("basic"), [cell.at("tc_stamp", "tc/ingress", "lk-b0"),
                                             cell.at("sock_delay", "socket_filter", "b")], count=5)
    if not log.packets():
        return Verdict(exercise, False, "no packet reached the socket", [])
    return log


def judge_delays(log, packets):
    """Exercise 01's judgement of each packet's reported delay, from the events.

    The delay must end after the stamp's storage was allocated (or the
    observer saw the packet at tc ingress) and before the report was written:
    that bound holds on any clock. It must also cover the time from cgroup_skb
    ingress to the report; that bound assumes nothing ran between your
    bpf_ktime_get_ns() and lab_report()'s own, which a busy host breaks (under
    TCG the guest clock jumps when the host deschedules the VM). So a late-stamp
    program is one most packets show it for, not one packet."""
    lines, ok, delays, short = [], True, [], 0
    for p in packets:
        evs = [e for e in log if e.get("packet") == p]
        seen = [e for e in evs if e["kind"] == "hook" and e.get("hook") == "tc/ingress"]
        got = [e for e in evs if e["kind"] == "report" and e.get("tag") == "delay_ns"]
        if not got:
            ok = False
            lines.append(f"packet {p}: no delay reported (expected lab_report(ctx, LAB_REPORT_DELAY_NS, ...) "
                         "from the socket filter)")
            continue
        r = got[0]
        mine = [e for e in evs if e["kind"] == "storage_alloc" and e.get("map") not in ("storage_a", "storage_b")
                or e["kind"] == "meta_create"]
        start = (mine or seen or [None])[0]
        later = [e for e in evs if e["kind"] == "hook" and e.get("hook") == "cgroup_skb/ingress"
                 and start is not None and e["seq"] > start["seq"]]
        hi = (r["t_us"] - start["t_us"] + 5) * 1000 if start else 10**12
        lo = (r["t_us"] - later[0]["t_us"] - 5) * 1000 if later else 1
        delays.append(r["value"])
        if r["value"] <= 0 or r["value"] > 10**12:
            ok = False
            lines.append(f"packet {p}: reported delay {r['value']} ns is not a positive time difference")
        elif r["value"] > hi:
            ok = False
            lines.append(f"packet {p}: reported {r['value'] / 1000:.1f} us, but the kernel took at most "
                         f"{hi / 1000:.1f} us from your stamp to your report")
        elif r["value"] < lo:
            short += 1
            lines.append(f"packet {p}: reported {r['value'] / 1000:.1f} us, less than the {lo / 1000:.1f} us "
                         "from cgroup_skb ingress to your report")
        else:
            lines.append(f"packet {p}: {r['value'] / 1000:.1f} us from tc ingress to the socket")
    if short and short * 2 >= len(delays):
        ok = False
        lines.append("your stamp is taken too late for most packets: stamp at tc ingress, where the storage is made")
    elif short:
        lines.append(f"{short} of {len(delays)} packets came up short: the guest clock jumps while the host is busy")
    if len(delays) >= 3 and len(set(delays)) == 1:
        ok = False
        lines.append(f"every packet reported exactly {delays[0]} ns: measure each packet, do not write a number in")
    return ok, lines


# ---- 10: lesson 01's stamp, in the metadata buffer ------------------------------------


@checked("10")
def buffer_stamp(lab, cell):
    """Lesson 01's two programs ported to the metadata buffer: tc_stamp writes the time into the
    packet's buffer (bpf_dynptr_from_skb_ext with BPF_SKB_EXT_F_CREATE), sock_delay reads it back."""
    log = stamp_run(lab, "10", cell)
    if isinstance(log, Verdict):
        return log
    packets = log.packets()
    mine = sorted({e.get("map") for e in log if e["kind"] == "storage_alloc"
                   and e.get("map") not in ("storage_a", "storage_b")})
    if mine:
        return Verdict("10", False, f"the stamp is still kept in skb storage (the kernel allocated {', '.join(mine)})",
                       ["port it: bpf_dynptr_from_skb_ext() opens the packet's metadata buffer, and a slice or "
                        "bpf_dynptr_write()/bpf_dynptr_read() reach its bytes"])
    bare = [p for p in packets if not any(e["kind"] == "hook" and e.get("packet") == p
                                          and e.get("hook") == "cgroup_skb/ingress"
                                          and e["maps"].get("meta", {}).get("state") == "present" for e in log)]
    if bare:
        return Verdict("10", False, f"packet{'s' if len(bare) > 1 else ''} {', '.join(map(str, bare))} had no "
                       "metadata buffer after tc ingress",
                       ["tc_stamp must create it: bpf_dynptr_from_skb_ext(ctx, 0, BPF_SKB_EXT_F_CREATE, &ptr)"])
    ok, lines = judge_delays(log, packets)
    return Verdict("10", ok, "every delivered packet reports its own delay, from the metadata buffer" if ok else
                   "not every packet reported a believable delay", lines)


# ---- 02: the verifier's NULL check ----------------------------------------------------


@checked("02")
def verifier_fix(lab, cell):
    """tc_write stores the packet's token at tc ingress; cg_read reports it at cgroup_skb ingress."""
    bad = cell_ready("02", cell, ("tc_write", "cg_read"))
    if bad:
        return bad
    log = run_with(lab, lab.scenario("basic"), [cell.at("tc_write", "tc/ingress", "lk-b0"),
                                             cell.at("cg_read", "cgroup_skb/ingress", "b")], count=3)
    lines, ok = [], True
    for p in log.packets():
        token = next(e["token"] for e in log if e.get("packet") == p)
        got = [e["value"] for e in reports(log, "value") if e.get("packet") == p]
        if got and got[0] == token:
            lines.append(f"packet {p}: stored and read back {token:#010x}")
        else:
            ok = False
            lines.append(f"packet {p}: expected the value {token:#010x} reported, got "
                         f"{', '.join(f'{v:#x}' for v in got) or 'no report'}")
    return Verdict("02", ok, "it loads, and each packet's value is read back" if ok else
                   "it loads, but the values read back are not the packets' own", lines)


# ---- 03: refused or absent ------------------------------------------------------------


@checked("03")
def refused_or_absent(lab, cell):
    """cg_kind at cgroup_skb ingress reports LAB_REPORT_PRESENT, _ABSENT or _REFUSED for its own map."""
    bad = cell_ready("03", cell, ("cg_kind",))
    if bad:
        return bad
    tags = {"present": "LAB_REPORT_PRESENT", "absent": "LAB_REPORT_ABSENT", "refused": "LAB_REPORT_REFUSED"}
    lines, ok = [], True
    for kind in ("mirred", "bpf_clone_redirect", "af_packet"):
        log = run_with(lab, lab.scenario("clone", kind=kind), [cell.at("cg_kind", "cgroup_skb/ingress", "b")])
        for e in log:
            if e["kind"] != "hook" or e.get("hook") != "cgroup_skb/ingress":
                continue
            # Your map never stored anything: refused when the skb shares its
            # extensions with a clone (what the observer's map says too), else absent.
            truth = "refused" if e["maps"]["storage_a"]["state"] == "refused" else "absent"
            mine = [r["tag"] for r in reports(log) if r.get("skb") == e["skb"]]
            if mine[:1] == [truth]:
                lines.append(f"clone by {kind}: {truth}, as the kernel says")
            else:
                ok = False
                lines.append(f"clone by {kind}: the kernel says {truth} ({tags[truth]}), you reported "
                             f"{mine[0] if mine else 'nothing'}")
    return Verdict("03", ok, "refused and absent told apart" if ok else "refused and absent are not told apart",
                   lines)


# ---- 05: the crossing table -----------------------------------------------------------

CROSSINGS = {
    "veth into another netns": ("mark_vs_storage", {"path": "netns"}),
    "veth inside one netns": ("mark_vs_storage", {"path": "same_netns"}),
    "bpf_redirect_peer": ("netns", {"path": "redirect_peer"}),
}


def crossing_truth(lab) -> dict:
    """What the kernel does to skb->mark and skb storage on each crossing: {row: {"mark", "storage"}}."""
    from labkit.scenarios.mark_vs_storage import MARK

    out = {}
    for row, (name, params) in CROSSINGS.items():
        log = lab.run(name, **params)
        last = [e for e in log if e["kind"] == "hook" and e.get("hook") == "cgroup_skb/ingress"][0]
        out[row] = {"mark": "kept" if last.get("mark") == MARK else "dropped",
                    "storage": "kept" if last["maps"]["storage_a"]["state"] in ("present", "created") else "dropped",
                    "log": log}
    return out


@checked("05")
def crossing_table(lab, table):
    """table: {row: {"mark": "kept"|"dropped", "storage": "kept"|"dropped"}} for the rows of CROSSINGS."""
    truth = crossing_truth(lab)
    lines, ok = [], True
    for row, t in truth.items():
        for col in ("mark", "storage"):
            said = ((table or {}).get(row) or {}).get(col)
            if said == t[col]:
                lines.append(f"{row}, {col}: {said}")
            else:
                ok = False
                lines.append(f"{row}, {col}: you wrote {said!r}, the kernel {t[col]} it")
    return Verdict("05", ok, "your table matches the kernel" if ok else "your table and the kernel disagree", lines)


# ---- 06: the side stash must be cleaned --------------------------------------------------


@checked("06")
def stash_cleanup(lab, cell):
    """tc_stash (given) stashes every test packet in my_stash by skb address; your
    tracing programs must remove each entry when the skb is freed."""
    bad = cell_ready("06", cell, ("tc_stash",))
    if bad:
        return bad
    tracers = [p for p in cell.programs if p != "tc_stash"]
    if not tracers:
        return Verdict("06", False, "the cell has no cleanup program yet",
                       ["add SEC(\"tp_btf/consume_skb\") and SEC(\"tp_btf/kfree_skb\") programs that delete "
                        "the skb's entry"])
    n = 1000
    log = run_with(lab, lab.scenario("netns", path="veth"),
                [cell.at("tc_stash", "tc/egress", "lk-a0")] + [cell.at(p, "trace") for p in tracers], count=n)
    stashed = len([r for r in reports(log, "value")])
    left = log.header.get("own_maps", {}).get("my_stash")
    lines = [f"{stashed} packets stashed at tc egress, {left} entries left in my_stash after the run"]
    if stashed < n * 0.9:
        return Verdict("06", False, f"only {stashed} of {n} packets were stashed; keep tc_stash as given", lines)
    if left != 0:
        lines.append("an entry left behind is memory the stock-kernel design leaks for every packet")
        return Verdict("06", False, "the stash is not empty after 1000 packets", lines)
    return Verdict("06", True, "every stashed entry was cleaned when its skb was freed", lines)


def all_checks() -> dict:
    """Every exercise's check name (the instructor view's columns), the tunnel ones (04, 08) included."""
    from labkit.course import tunnels  # noqa: F401 - registers 04 and 08

    return dict(CHECKS)
