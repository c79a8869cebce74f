"""What one event of a run means, in a few plain lines: the step-through's details pane."""

from __future__ import annotations

from labkit.runtime.events import describe
from labkit.viz.draw import HOOK_NAMES
from labkit.viz.lifetime import num
from labkit.viz.model import (
    KEEP_FLAGS,
    KEEP_WHY,
    attribute_to,
    build_model,
    scrub_outcomes,
    skb_names,
    slots_of,
)

SAYS = {"clone": "{skb} is a clone of {parent}, made by {where}() through skb_clone(). Both share one extension "
                 "block: while both live, storage is refused on both.",
        "storage_free": "{skb}'s extension block is freed in {where}(): the storage is gone.",
        "storage_clone": "skb_clone() copies the {map} element to the clone {skb}: the map has BPF_F_CLONE, so the "
                         "clone gets an extension block of its own and both keep using their storage.",
        "free": "{skb} is released in {where}().",
        "stash_clean": "The side stash entry keyed by {skb}'s address is removed at the {hook} tracepoint.",
        "storage_alloc": "A {map} element is allocated on {skb} in {where}().",
        "report": "Your program reported {tag} = {value} on {skb} (lab_report() in {obj}).",
        "meta_copy": "{skb} gets an extension block of its own, and the metadata buffer is copied into it "
                     "(bpf_skb_ext:skb_ext_bpf_copy): a write to a buffer that a clone shares copies the block first.",
        "meta_scrub": "The {reason} scrub from {where}() drops {skb}'s extensions but keeps the metadata buffer: "
                      "it moves into a fresh extension block (bpf_skb_ext:skb_ext_bpf_scrub). No flag asks for "
                      "this; every scrub keeps the buffer.",
        "meta_free": "The extension block holding the metadata buffer is freed in {where}() "
                     "(bpf_skb_ext:skb_ext_bpf_free): the buffer is gone.",
        "gated_copy": "skb_gated:skb_copy fires because {parent} is armed: {skb} is its copy, armed too, and the "
                      "stash's program copies the entry to {skb}'s address.",
        "gated_scrub": "skb_gated:skb_scrub fires ({reason} scrub from {where}()): the stash entry is keyed by "
                       "{skb}'s address in a hash map, so the scrub does not touch it.",
        "gated_free": "skb_gated:skb_free fires as {skb} is freed in {where}(): the stash's program deletes the "
                      "entry keyed by its address. Only an armed skb fires it."}
# What a hook's program had the kernel do, folded into the hook's node.
IN_HOOK = {"storage_alloc": "  {map} was allocated for it in {where}()",
           "meta_create": "  bpf_dynptr_from_skb_ext(F_CREATE) made its metadata buffer (bpf_skb_ext:skb_ext_bpf_create)",
           "gated_arm": "  bpf_trace_skb() armed it (returned {err}): its free, copies and scrubs now fire skb_gated:*"}
# A clone, as the run's design sees it (SAYS["clone"] is skb storage's).
CLONE_SAYS = {"meta": "{skb} is a clone of {parent}, made by {where}() through skb_clone(). Both share one extension "
                      "block, and the metadata buffer in it: both read the same bytes, and a write to either copies "
                      "the block first.",
              "gated": "{skb} is a clone of {parent}, made by {where}() through skb_clone(): a new skb at a new address, "
                       "which a hash keyed by the address knows nothing of, unless the gated skb_copy copies the entry.",
              "stash": "{skb} is a clone of {parent}, made by {where}() through skb_clone(): a new skb at a new address, "
                       "which the side stash, keyed by the address, knows nothing of."}
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
        hosted = build_model(log, p)[0][f"ev{seq}"].get("hosted", [])
        lines += [IN_HOOK[h["kind"]].format(**{"map": None, "where": None, "err": None, **h})
                  for h in hosted if h.get("kind") in IN_HOOK]
        if e.get("clone_ret") is not None:
            lines.append(f"  bpf_clone_redirect() returned {e['clone_ret']}")
    elif kind == "scrub":
        x, did = int(bool(e.get("xnet"))), scrub_outcomes(log).get(seq)
        kept = sorted({m for m, _ in did["kept"]}) if did else []
        lines.append(f"skb_scrub_packet(xnet={x}) called from {e.get('where')}() {place}: the skb's extensions "
                     + (f"are dropped, but {', '.join(kept)} is kept: "
                        + " and ".join(sorted({KEEP_WHY.get(m) or f"its map has {KEEP_FLAGS.get(r, r)}"
                                               for m, r in did['kept']}))
                        + ("" if set(kept) <= {"gated"} else ", and it moves to fresh extensions")
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
        said = CLONE_SAYS.get(log.design_slot(), SAYS[kind]) if kind == "clone" else SAYS[kind]
        lines.append(said.format(skb=skb, parent=names.get(e.get("parent"), "its parent"), where=e.get("where"),
                                 hook=e.get("hook"), map=e.get("map"), tag=e.get("tag"), reason=e.get("reason"),
                                 value=num(e.get("value"), e.get("tag")), obj=e.get("obj")))
    if e.get("stack"):
        lines.append("called from: " + " ← ".join(e["stack"]))
    lines.append(describe(e, names).strip())
    return "\n".join(lines)
