"""What one event of a run means, in a few plain lines: the step-through's details pane."""

from __future__ import annotations

from labkit.runtime.events import describe
from labkit.viz.draw import HOOK_NAMES
from labkit.viz.lifetime import num
from labkit.viz.model import KEEP_FLAGS, attribute_to, build_model, scrub_outcomes, skb_names, slots_of

SAYS = {"clone": "{skb} is a clone of {parent}, made by {where}() through skb_clone(). Both share one extension "
                 "block: while both live, storage is refused on both.",
        "storage_free": "{skb}'s extension block is freed in {where}(): the storage is gone.",
        "storage_clone": "skb_clone() copies the {map} element to the clone {skb}: the map has BPF_F_CLONE, so the "
                         "clone gets an extension block of its own and both keep using their storage.",
        "free": "{skb} is released in {where}().",
        "stash_clean": "The side stash entry keyed by {skb}'s address is removed at the {hook} tracepoint.",
        "storage_alloc": "A {map} element is allocated on {skb} in {where}().",
        "report": "Your program reported {tag} = {value} on {skb} (lab_report() in {obj})."}
MEANS = {"created": "created here by this program", "present": "there, as written earlier", "absent": "none on this "
         "skb", "refused": "refused: the skb shares its extension block with a clone (delete says -EOPNOTSUPP)"}


def frame_details(log, seq) -> str:
    """What one event means, in a few plain lines, for the step-through's details pane."""
    where = {e.get("seq"): (p, e) for p, e in zip(attribute_to(log), log.events)}
    if seq not in where:
        raise ValueError(f"no event {seq} in this log")
    p, e = where[seq]
    names = {a: n for (q, a), n in skb_names(log).items() if q == p}
    skb, kind = names.get(e.get("skb"), "the skb"), e.get("kind")
    place = " ".join(x for x in (f"on {e['ifname']}" if e.get("ifname") else "",
                                 f"in lk-{e['ns']}" if e.get("ns") else "") if x)
    lines = [f"event {seq} · {skb} · packet {p} · {e.get('t_us', 0):.1f} µs"]
    if kind == "hook":
        lines.append(f"{skb} seen at {HOOK_NAMES.get(e.get('hook'), e.get('hook'))} {place}:")
        for s in slots_of(log)[0]:
            m = (e.get("maps") or {}).get(s) or {"state": "absent"}
            val = f" (value {m['value']:#x})" if isinstance(m.get("value"), int) else ""
            said = "no entry for this skb's address" if (s, m.get("state")) == ("stash", "absent") else None
            lines.append(f"  {s}: {said or MEANS.get(m.get('state'), m.get('state'))}{val}")
        lines.append(f"  skb->mark = {e.get('mark') or 0:#x}")
        hosts = build_model(log, p)[2]
        lines += [f"  {where[a][1].get('map')} was allocated for it in {where[a][1].get('where')}()"
                  for a, h in hosts.items() if h == f"ev{seq}"]
        if e.get("clone_ret") is not None:
            lines.append(f"  bpf_clone_redirect() returned {e['clone_ret']}")
    elif kind == "scrub":
        x, did = int(bool(e.get("xnet"))), scrub_outcomes(log).get(seq)
        kept = sorted({m for m, _ in did["kept"]}) if did else []
        lines.append(f"skb_scrub_packet(xnet={x}) called from {e.get('where')}() {place}: the skb's extensions "
                     + (f"are dropped, but {', '.join(kept)} is kept: its map has "
                        + " and ".join(sorted({KEEP_FLAGS.get(r, r) for _, r in did['kept']}))
                        + ", and the element moves to fresh extensions"
                        + (f" ({', '.join(sorted({m for m, _ in did['dropped']}))} is dropped)" if did["dropped"]
                           else "") + ". " if kept else "are dropped, and its storage with them. ")
                     + ("xnet=1 (crossing namespaces) clears skb->mark too." if x else "xnet=0 keeps skb->mark."))
    elif kind == "storage_scrub":
        flag = KEEP_FLAGS.get(e.get("reason"))
        if e.get("kept"):
            lines.append(f"The {e.get('reason')} scrub from {e.get('where')}() keeps the {e.get('map')} element on "
                         f"{skb}: its map has {flag}" + (" and BPF_F_SKB_KEEP_NETNS (the tunnel crosses namespaces)"
                                                         if e.get("xnet") and e.get("reason") == "tunnel" else "")
                         + ". It moves to a fresh extension block.")
        else:
            why = (f"its map does not have {flag}" if flag else "nothing keeps storage across forwarding within "
                   "one namespace")
            lines.append(f"The {e.get('reason')} scrub from {e.get('where')}() drops the {e.get('map')} element on "
                         f"{skb}: {why}.")
    elif kind in SAYS:
        lines.append(SAYS[kind].format(skb=skb, parent=names.get(e.get("parent"), "its parent"), where=e.get("where"),
                                       hook=e.get("hook"), map=e.get("map"), tag=e.get("tag"),
                                       value=num(e.get("value"), e.get("tag")), obj=e.get("obj")))
    if e.get("stack"):
        lines.append("called from: " + " ← ".join(e["stack"]))
    lines.append(describe(e, names).strip())
    return "\n".join(lines)
