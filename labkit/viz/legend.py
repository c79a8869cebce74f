"""The legends: what the colours of a lifetime graph mean, built from what the graph shows.

A scrub is drawn by what it did to the storage (``model.scrub_outcomes``):
red when it dropped the extensions and the storage on them, green when a
map's keep flag (BPF_F_SKB_KEEP_TUNNEL / BPF_F_SKB_KEEP_NETNS) kept the
element, red and green when it kept one map's and dropped another's. The
legend lists the kinds of scrub the graph has, naming the maps and flags.
"""

from __future__ import annotations

from labkit.viz.draw import FADED, KEPT, SCRUB, STATE, esc
from labkit.viz.model import KEEP_FLAGS, KEEP_WHY, scrub_kind

STATES = [("created 0x…", STATE["created"], "storage made here, with its value"),
          ("present 0x…", STATE["present"], "storage found, with its value"),
          ("absent", STATE["absent"], "no storage on this skb"),
          ("refused", STATE["refused"], "shares extensions with a clone")]
SCRUB_FILL = {"drops": SCRUB, "keeps": KEPT, "some": f"{SCRUB};0.5:{KEPT}"}  # graphviz: striped for both
DROPS = ("skb_scrub_packet()", (SCRUB, "white"), "drops the extensions: storage gone")
CLONE = ("- - - ▸", ("white", "#343a40"), "clone: new skb, same extensions")
STEPPING = [("bold", ("white", "#212529"), "the current event"), ("pale", FADED, "not happened yet")]
NOTE = ("#e9ecef", "#495057")
# What a slot's data is called in the legend, per design.
NOUN = {"storage_a": "storage", "storage_b": "storage", "meta": "buffer", "gated": "stash entry", "stash": "stash entry"}
# The notes a graph may show, by the tracepoints that said them: (kinds, legend row).
NOTE_ROWS = [
    (("storage_free", "storage_alloc", "storage_clone", "storage_scrub"),
     ("storage freed", NOTE, "bpf_skb_storage tracepoints: where the storage went")),
    (("stash_clean",), ("stash entry removed", NOTE, "the side stash's cleanup at every free")),
    (("meta_copy", "meta_scrub", "meta_free"),
     ("buffer kept", NOTE, "bpf_skb_ext tracepoints: where the metadata buffer went")),
    (("gated_copy", "gated_scrub", "gated_free"),
     ("skb_gated:skb_free", NOTE, "gated tracepoints, armed skbs only: the stash entry copied, reaped")),
    (("report",), ("your lab_report()", NOTE, "what your program reported")),
]


def _kept_text(outcomes) -> str:
    """'storage_a (BPF_F_SKB_KEEP_TUNNEL, BPF_F_SKB_KEEP_NETNS)' for the maps the scrubs kept."""
    kept = {}
    for o in outcomes:
        for m, reason in o["kept"]:
            flag = KEEP_WHY.get(m) or KEEP_FLAGS.get(reason, f"a keep flag for {reason}")
            if flag not in kept.setdefault(m, []):
                kept[m].append(flag)
    return "; ".join(f"{m} ({', '.join(flags)})" for m, flags in kept.items())


def scrub_rows(outcomes) -> list:
    """Legend rows for the scrubs a graph shows (their ``scrub_outcomes``); a graph without a scrub
    still says what the red node means."""
    kinds = {scrub_kind(o) for o in outcomes} or {"drops"}
    rows = [DROPS] if "drops" in kinds else []
    if "keeps" in kinds:
        rows.append(("skb_scrub_packet()", (KEPT, "white"),
                     "keeps " + _kept_text(o for o in outcomes if scrub_kind(o) == "keeps")))
    if "some" in kinds:
        rows.append(("skb_scrub_packet()", (SCRUB_FILL["some"], "white"),
                     "keeps " + _kept_text(o for o in outcomes if scrub_kind(o) == "some")
                     + ", drops the rest"))
    return rows


def lifetime_rows(outcomes, shown, stepping=False) -> list:
    """The lifetime graph's legend, a row for each thing the graph shows: its storage states, kinds of scrub,
    clones and notes. shown: {"states", "notes": note kinds, "clone", "slot": the design's}."""
    noun = NOUN.get(shown.get("slot"), "storage")
    states = [(k, colours, text.replace("storage", noun, 1)) for k, colours, text in STATES
              if k.split()[0] in shown["states"]]
    notes = [row for kinds, row in NOTE_ROWS if shown["notes"] & set(kinds)]
    return (states + (scrub_rows(outcomes) if outcomes else []) + ([CLONE] if shown["clone"] else []) + notes
            + (STEPPING if stepping else []))


def _key(k, fill, ink) -> str:
    text = f'<FONT COLOR="{ink}" POINT-SIZE="9">{esc(k)}</FONT>'
    if ";" not in fill:
        return f'<TD BGCOLOR="{fill}">{text}</TD>'
    left, right = fill.split(";")[0], fill.split(":")[-1]  # "red;0.5:green": half and half
    return (f'<TD><TABLE BORDER="0" CELLSPACING="0" CELLPADDING="0"><TR><TD BGCOLOR="{left}">{text}</TD>'
            f'<TD BGCOLOR="{right}" WIDTH="12"> </TD></TR></TABLE></TD>')


def legend(rows) -> str:
    """A graphviz HTML-like label: one row per (key, (fill, ink), meaning)."""
    cells = "".join(f'<TR>{_key(k, fill, ink)}<TD ALIGN="LEFT"><FONT POINT-SIZE="9">{esc(v)}</FONT></TD></TR>'
                    for k, (fill, ink), v in rows)
    return ('<<TABLE BORDER="1" COLOR="#adb5bd" CELLBORDER="0" CELLSPACING="1" CELLPADDING="2">'
            f'<TR><TD COLSPAN="2"><B>legend</B></TD></TR>{cells}</TABLE>>')
