"""The storage benchmark's results (``labkit.bench.storage``) as pictures and tables.

Pure functions from the results dict: an SVG bar chart of every design's
cost as a ratio to the counter-only floor of the same run (log scale, the
spread over repeats as a whisker), an HTML table, and what those costs add
up to at a given packet rate. The figures are in the results' ``unit`` ("ns", or
"instructions" from a lab VM that counts them), under the key ``ns`` either way.
"""

from __future__ import annotations

import html
import math

# (design, role, label) in the order the chart shows them
ROWS = (
    ("skb_storage:plain", "write", "skb storage, plain: create+write (tc)"),
    ("skb_storage:inline", "write", "skb storage, optimised: create+write (tc)"),
    ("stash", "write", "hash side-stash: write (tc)"),
    ("mark", "write", "skb->mark: write (tc)"),
    ("data_meta", "write", "data_meta: write (XDP, vs XDP floor)"),
    ("skb_ext", "write", "metadata buffer: create+write (tc)"),
    ("gated", "write", "gated tracepoints: write+arm (tc)"),
    ("skb_storage:plain", "read", "skb storage, plain: lookup+read (cgroup_skb)"),
    ("skb_storage:inline", "read", "skb storage, optimised: lookup+read (cgroup_skb)"),
    ("stash", "read", "hash side-stash: read (cgroup_skb)"),
    ("mark", "read", "skb->mark: read (cgroup_skb)"),
    ("data_meta", "read", "data_meta: read (tc)"),
    ("skb_ext", "read", "metadata buffer: read (cgroup_skb)"),
    ("gated", "read", "gated tracepoints: read (cgroup_skb)"),
    ("stash", "cleanup", "hash side-stash: cleanup at every skb free"),
    ("gated", "cleanup", "gated tracepoints: reap per armed skb freed"),
    ("gated_clone", "copy", "gated tracepoints: copy per clone"),
)
# The optimised (inline) skb storage's bounds, in guest instructions per program run: no more than
# the series reached before its second read (tests/host/test_cost_icount.py holds them). Counted
# figures only: a timing in ns has no such bound.
BOUNDS = {"write": 303, "read": 107}
# Public figures (native hardware), for the table: ns per packet
REFERENCE_NS = {("floor", "write"): 70, ("floor", "read"): 36, ("skb_storage:plain", "write"): 330,
                ("skb_storage:plain", "read"): 115, ("stash", "write"): 531, ("stash", "read"): 85,
                ("stash", "cleanup"): 267}
COLOURS = {"skb_storage:plain": "#adb5bd", "skb_storage:inline": "#2b8a3e", "stash": "#e67700", "mark": "#1c7ed6",
           "data_meta": "#7048e8", "skb_ext": "#0c8599", "gated": "#c2255c", "gated_clone": "#c2255c"}


def median(res, design, role):
    """The median figure of a design's role in the results, None where the run has none."""
    return ((((res.get("designs") or {}).get(design) or {}).get(role) or {}).get("ns") or {}).get("median")


def rows(res):
    d = res.get("designs", {})
    for design, role, label in ROWS:
        v = (d.get(design) or {}).get(role)
        if v and v.get("ratio") and v.get("ns"):
            yield design, role, label, v


def chart(res, width=760) -> str:
    """An SVG: one bar per design and side, ratio to the floor on a log scale."""
    items = list(rows(res))
    left, right, top, bar, gap = 300, 20, 34, 16, 6
    hi = max([2.0] + [v["ratio"]["max"] for *_, v in items])
    top_ratio = 2 ** math.ceil(math.log2(hi))
    plot_w = width - left - right

    def x(r):  # log scale from 0.5x to top_ratio
        return left + plot_w * (math.log2(max(r, 0.5)) + 1) / (math.log2(top_ratio) + 1)

    height = top + len(items) * (bar + gap) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11" class="labkit-cost">',
           f'<text x="10" y="14" font-size="12" font-weight="bold">{"Instructions" if unit(res) == "instructions" else "Cost"}'
           f' per packet, as a multiple of the counter-only floor (log scale; whisker: min-max over '
           f'{res.get("repeats", "?")} repeats)</text>']
    t = 0.5
    while t <= top_ratio:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 30}" stroke="#dee2e6"/>'
                   f'<text x="{x(t):.1f}" y="{height - 16}" text-anchor="middle" fill="#495057">{t:g}x</text>')
        t *= 2
    y = top
    last_role = None
    for design, role, label, v in items:
        if last_role and role != last_role:
            y += gap
        last_role = role
        r = v["ratio"]
        colour = COLOURS.get(design, "#495057")
        out.append(f'<text x="{left - 8}" y="{y + bar - 4}" text-anchor="end">{html.escape(label)}</text>')
        x0, x1 = sorted((x(1), x(r["median"])))
        out.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(1.0, x1 - x0):.1f}" height="{bar}" '
                   f'fill="{colour}"><title>{html.escape(label)}: {r["median"]:.2f}x ({v["ns"]["median"]:.0f} {unit(res)})'
                   f'</title></rect>')
        out.append(f'<line x1="{x(r["min"]):.1f}" y1="{y + bar / 2}" x2="{x(r["max"]):.1f}" y2="{y + bar / 2}" '
                   f'stroke="#212529"/>')
        out.append(f'<text x="{x(r["max"]) + 4:.1f}" y="{y + bar - 4}" fill="#212529">{r["median"]:.2f}x</text>')
        bound = bound_ratio(res, design, role)
        if bound:
            tx = x(bound)
            out.append(f'<line x1="{tx:.1f}" y1="{y - 2}" x2="{tx:.1f}" y2="{y + bar + 2}" stroke="#c92a2a" '
                       f'stroke-width="2" stroke-dasharray="3,2"><title>bound {BOUNDS[role]} instructions'
                       f'</title></line>')
        y += bar + gap
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 6}" x2="{x(1):.1f}" y2="{height - 30}" stroke="#212529"/>')
    if res.get("unit") == "instructions":
        out.append(f'<text x="{left}" y="{height - 2}" fill="#c92a2a">dashed red: the bounds the optimised skb '
                   f'storage stays within ({BOUNDS["write"]} instructions write, {BOUNDS["read"]} read)</text>')
    out.append("</svg>")
    return "".join(out)


def table_html(res) -> str:
    head = (f"<tr><th>design</th><th>side</th><th>{unit(res)} per packet<br>median (min-max)</th>"
            "<th>x floor<br>median (min-max)</th><th>public figure, native</th></tr>")
    body = []
    d = res.get("designs", {})
    for design, role in (("floor", "write"), ("floor", "read"), ("floor_xdp", "write")):
        v = (d.get(design) or {}).get(role)
        if v and v.get("ns"):
            ref = REFERENCE_NS.get((design, role))
            body.append(f"<tr><td>{design}</td><td>{role}</td><td>{v['ns']['median']:.0f} "
                        f"({v['ns']['min']:.0f}-{v['ns']['max']:.0f})</td><td>1</td><td>{f'{ref} ns' if ref else ''}</td></tr>")
    for design, role, label, v in rows(res):
        ref = REFERENCE_NS.get((design, role))
        r = v["ratio"]
        body.append(f"<tr><td>{html.escape(label.split(':')[0])}</td><td>{role}</td><td>{v['ns']['median']:.0f} "
                    f"({v['ns']['min']:.0f}-{v['ns']['max']:.0f})</td><td>{r['median']:.2f} ({r['min']:.2f}-"
                    f"{r['max']:.2f})</td><td>{f'{ref} ns' if ref else ''}</td></tr>")
    return f'<table class="labkit-cost-table">{head}{"".join(body)}</table>'


def table_text(res, reference=None) -> str:
    """Every design and role as text: the figure per packet and the ratio to the floor (median, min-max
    over repeats), with the bounds of the optimised (inline) implementation and reference[f"{design}:{role}"]."""
    head = f"{unit(res)}/packet (median, min-max)"
    rows = [f"{'design':<22} {'role':<8} {head:<38} {'x floor (median, min-max)':<26} reference"]
    for name, d in res["designs"].items():
        for role, v in d.items():
            if role == "received" or not v.get("ns"):
                continue
            ns, ratio = v["ns"], v.get("ratio")
            r = f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})" if ratio else "-"
            ref = (reference or {}).get(f"{name.split(':')[0]}:{role}", "")
            if name == "skb_storage:inline" and role in BOUNDS and res.get("unit") == "instructions":
                ref = f"bound <= {BOUNDS[role]} instructions"
            fig = f"{ns['median']:>8.1f} ({ns['min']:.1f}-{ns['max']:.1f})"
            rows.append(f"{name:<22} {role:<8} {fig:<38} {r:<26} {ref}")
    return "\n".join(rows)


def unit(res) -> str:
    """What the figures count: "ns" or "instructions"."""
    return res.get("unit") or "ns"


def at_rate(ns: float, pps: float) -> float:
    """Share of one CPU (percent) that ns of work per packet takes at pps."""
    return ns * pps / 1e9 * 100


IPNS = 1.0  # instructions per ns assumed where instructions become time: an assumption, not a hardware fact


def rates_html(res, rates=(100_000, 1_000_000)) -> str:
    """What each design's extra work over the floor costs at each packet rate: a share of one CPU from ns;
    from instructions, millions of instructions per second and the share of a core that takes at an
    assumed IPNS instructions per ns (stated in the table)."""
    icount = unit(res) == "instructions"
    floor = {role: median(res, "floor", role) for role in ("write", "read")}
    if icount:
        head = ("<tr><th>design</th><th>side</th><th>extra instructions per packet</th>" + "".join(
            f"<th>at {r // 1000} kpps: million instructions/s (% of a core at {IPNS:g} per ns, assumed)</th>"
            for r in rates) + "</tr>")
    else:
        head = "<tr><th>design</th><th>side</th><th>extra ns (here)</th>" + "".join(
            f"<th>% of a core at {r // 1000} kpps (here)</th>" for r in rates) + "</tr>"
    body = []
    for design, role, label, v in rows(res):
        base = floor.get(role) or floor["write"]
        if design == "data_meta" and role == "write":
            base = median(res, "floor_xdp", "write") or base
        extra = max(0.0, v["ns"]["median"] - (base or 0))
        if icount:
            cells = "".join(f"<td>{extra * r / 1e6:.1f} ({at_rate(extra / IPNS, r):.1f}%)</td>" for r in rates)
        else:
            cells = "".join(f"<td>{at_rate(extra, r):.1f}%</td>" for r in rates)
        body.append(f"<tr><td>{html.escape(label.split(':')[0])}</td><td>{role}</td><td>{extra:.0f}</td>{cells}</tr>")
    return f'<table class="labkit-cost-table">{head}{"".join(body)}</table>'


TEST_RUN_ROWS = (("bench_floor_w", "floor (tc)"), ("bench_storage_w", "skb storage create+write (tc)"),
                 ("bench_stash_w", "hash side-stash write (tc)"), ("bench_mark_w", "skb->mark write (tc)"),
                 ("bench_floor_r", "floor (cgroup_skb)"), ("bench_storage_r", "skb storage lookup+read (cgroup_skb)"),
                 ("bench_stash_r", "hash side-stash read (cgroup_skb)"), ("bench_mark_r", "skb->mark read (cgroup_skb)"),
                 ("bench_floor_x", "floor (XDP)"), ("bench_meta_w", "data_meta write (XDP)"),
                 ("bench_meta_r", "data_meta read (tc)"))


def test_run_html(res) -> str:
    """BPF_PROG_TEST_RUN's average ns per run for the same programs, with what it does and does not time."""
    t = res.get("test_run") or {}
    body = "".join(f"<tr><td>{html.escape(label)}</td><td>{t[p]['ns']:.0f}</td></tr>" for p, label in TEST_RUN_ROWS
                   if p in t and t[p].get("ns") is not None)
    note = html.escape((res.get("notes") or {}).get("test_run", ""))
    return (f'<table class="labkit-cost-table"><tr><th>program</th><th>{unit(res)} per run (BPF_PROG_TEST_RUN)</th></tr>'
            f'{body}</table><p style="max-width:60em">{note}</p>')


def bound_ratio(res, design, role) -> float | None:
    """Where the chart draws the optimised design's bound for role: the bound over this run's floor."""
    if design != "skb_storage:inline" or role not in BOUNDS or res.get("unit") != "instructions":
        return None
    base = median(res, "floor", role)
    return BOUNDS[role] / base if base else None


def bounds_html(res) -> str:
    """Whether the optimised (inline) implementation stays within the bounds the chart draws, in figures.
    Only for counted instructions: a timing in ns has no such bound."""
    if res.get("unit") != "instructions":
        return ""
    d = (res.get("designs") or {}).get("skb_storage:inline") or {}
    parts, over = [], 0
    for role, bound in BOUNDS.items():
        v = d.get(role)
        if not v:
            continue
        n = v["ns"]["median"]
        over += n > bound
        parts.append(f"{role} {n:.0f} instructions ({v['ratio']['median']:.2f}x the floor), bound {bound}: "
                     f"<b>{'within' if n <= bound else f'over by {n - bound:.0f}'}</b>")
    if not parts:
        return ""
    head = ("The optimised skb storage goes over its bounds on this run" if over
            else "The optimised skb storage stays within its bounds on this run")
    return f"<p>{head}: {'; '.join(parts)}.</p>"


# ---- the designs after the RFC, per packet (lesson 10) ----------------------------------------------

# (label, [(design, role)]): the programs one packet runs in each design, once each (the reap: once per
# armed skb freed, one per packet here; the side stash's cleanup runs at every skb free, at least one)
PER_PACKET = (
    ("skb storage, optimised", (("skb_storage:inline", "write"), ("skb_storage:inline", "read"))),
    ("metadata buffer", (("skb_ext", "write"), ("skb_ext", "read"))),
    ("gated tracepoints + hash", (("gated", "write"), ("gated", "read"), ("gated", "cleanup"))),
    ("ungated side stash", (("stash", "write"), ("stash", "read"), ("stash", "cleanup"))),
)
# Upstream's system-level figures (Sep 2026, skb-metadata-bench REPORT.md): whole-system CPU ns per
# packet, on two kernel trees, native hardware
UPSTREAM_NS = {"metadata buffer": 2720, "gated tracepoints, one kind of hash": 4100,
               "gated tracepoints, another kind of hash": 6750}
WITHIN = 1.25  # the goal: optimised skb storage within this of the metadata buffer, on each side


def per_packet(res) -> list:
    """[(label, {role: figure}, total, over the floors)] for the designs of PER_PACKET the run has."""
    floors = (median(res, "floor", "write") or 0) + (median(res, "floor", "read") or 0)
    out = []
    for label, parts in PER_PACKET:
        figs = {role: median(res, d, role) for d, role in parts}
        if None in figs.values():
            continue
        total = sum(figs.values())
        out.append((label, figs, total, total - floors))
    return out


def versus(res) -> dict:
    """Optimised skb storage against the metadata buffer, side by side: {role: (storage, buffer, ratio)}."""
    out = {}
    for role in ("write", "read"):
        a, b = median(res, "skb_storage:inline", role), median(res, "skb_ext", role)
        if a and b:
            out[role] = (a, b, a / b)
    return out


def _free_cell(figs) -> str:
    return f"{figs['cleanup']:.0f}" if "cleanup" in figs else "(kernel code, not counted)"


def designs_html(res) -> str:
    """Each design's programs for one packet, in the run's unit, and the goal of WITHIN."""
    u = unit(res)
    rows_ = per_packet(res)
    if not rows_:
        return "<p>(this run has no figures of the designs after the RFC: record it again with benchmarks/storage_cost.py)</p>"
    base = next((over for label, _, _, over in rows_ if label == "metadata buffer"), None)
    body = "".join(
        (f"<tr><td>{html.escape(label)}</td><td>{figs['write']:.0f}</td><td>{figs['read']:.0f}</td>"
         f"<td>{_free_cell(figs)}</td>"
         f"<td>{total:.0f}</td><td>{over:.0f}</td><td>{f'{over / base:.2f}x' if base else ''}</td></tr>")
        for label, figs, total, over in rows_)
    head = (f"<tr><th>design</th><th>write ({u})</th><th>read ({u})</th><th>at the skb's free ({u})</th>"
            f"<th>per packet ({u})</th><th>over the floors</th><th>x the metadata buffer's</th></tr>")
    vs = versus(res)
    goal = "; ".join(f"{'create+write' if role == 'write' else 'lookup+read'}: {a:.0f} against {b:.0f}, "
                     f"<b>{r:.2f}x</b> ({'within' if r <= WITHIN else 'over'} {WITHIN}x)"
                     for role, (a, b, r) in vs.items())
    return (f'<table class="labkit-cost-table">{head}{body}</table>'
            + (f"<p>Optimised skb storage against the metadata buffer: {goal}.</p>" if goal else ""))
