"""The lifetime graph, the topology picture and the step-through widgets, on real recordings (no VM)."""

import html
import re
import subprocess
import sys

import pytest

from labkit import scenarios, viz
from labkit.errors import MissingTool
from labkit.paths import PROJECT
from labkit.runtime.events import EventLog

DATA = PROJECT / "notebooks" / "data"
RECORDINGS = sorted(p.stem for p in DATA.glob("*.jsonl"))
EDGE = re.compile(r"^\s*(\w+) -> (\w+) \[(.*)\]$")
NODE = re.compile(r"^\s*(\w+) \[(.*)\]$")


def load(name):
    return EventLog.load(DATA / f"{name}.jsonl")


def elements(graph):
    """{node id: (cluster or None, attrs)}, {edge id: (tail, head, attrs)} from the DOT source."""
    nodes, edges, cluster = {}, {}, None
    for line in graph.source.splitlines():
        if m := re.match(r"^\s*subgraph (cluster_\w+) \{", line):
            cluster = m[1]
        elif line.strip() == "}":
            cluster = None
        elif m := EDGE.match(line):
            named = re.search(r'\bid="?([\w-]+)"?', m[3])
            edges[named[1] if named else f"{m[1]}->{m[2]}"] = (m[1], m[2], m[3])
        elif (m := NODE.match(line)) and m[1] not in ("graph", "node", "edge"):
            nodes[m[1]] = (cluster, m[2])
    return nodes, edges


def of_kind(log, kind, packet=1):
    return [e for e in log.events if e["kind"] == kind and e.get("packet") == packet]


def hook(log, name, ifname=None, packet=1):
    return next(e for e in of_kind(log, "hook", packet) if e["hook"] == name and (ifname is None or e["ifname"] == ifname))


def token(log, packet=1):
    """The value the packet's storage was created with (a random token, new in every recording)."""
    return next(e["maps"]["storage_a"]["value"] for e in of_kind(log, "hook", packet)
                if e["maps"]["storage_a"]["state"] == "created")


def test_recordings_are_there():
    for name in ("basic-udp", "clone-mirred", "tunnel-gre-before_encap", "netns-veth", "mark_vs_storage-same_netns",
                 "side_stash-clone", "two_maps"):
        assert name in RECORDINGS


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_hook_is_a_node_in_its_namespace_cluster(name):
    log = load(name)
    nodes, edges = elements(viz.lifetime_graph(log))
    hooks = of_kind(log, "hook")
    assert hooks, f"{name} has no hook events"
    for e in hooks:
        cluster, attrs = nodes[f"ev{e['seq']}"]
        assert cluster == f"cluster_{e['ns']}"
        assert viz.HOOK_NAMES.get(e["hook"], e["hook"]) in attrs and e["ifname"] in attrs
    source = viz.lifetime_graph(log).source
    for ns in {e["ns"] for e in hooks}:
        assert f'label="lk-{ns}"' in source
    assert "0xffff" not in source, "raw skb addresses leaked into the graph"
    # the legend explains the states the graph shows, and no other
    shown = {((e.get("maps") or {}).get(s) or {}).get("state", "absent") for e in hooks for s in viz.slots_of(log)[0]}
    for state in ("created", "present", "absent", "refused"):
        assert (f">{state}" in nodes["legend"][1]) == (state in shown), (state, shown)
    assert all(head in nodes and tail in nodes for tail, head, _ in edges.values())


def test_scrubs_are_red_and_name_the_kernel_function():
    log = load("tunnel-gre-before_encap")
    nodes, edges = elements(viz.lifetime_graph(log))
    scrubs = of_kind(log, "scrub")
    assert [e["where"] for e in scrubs] == ["iptunnel_xmit", "__dev_forward_skb2", "__iptunnel_pull_header",
                                            "ip_tunnel_rcv"]
    for e in scrubs:
        cluster, attrs = nodes[f"ev{e['seq']}"]
        assert f"from {e['where']}" in attrs and "skb_scrub_packet()" in attrs
        assert f"xnet={int(e['xnet'])}" in attrs and f'fillcolor="{viz.SCRUB}"' in attrs
    # the veth crossing sits between the namespaces, the encap scrub inside lk-a
    assert nodes[f"ev{scrubs[1]['seq']}"][0] is None
    assert nodes[f"ev{scrubs[0]['seq']}"][0] == "cluster_a"
    # "who dropped it": the storage was freed right at the encap scrub
    (free,) = of_kind(log, "storage_free")
    tail, head, _ = edges[f"to-ev{free['seq']}"]
    assert tail == f"ev{scrubs[0]['seq']}" and "freed\\nin iptunnel_xmit" in nodes[head][1]
    # and the kernel's tracepoint said so for the map, at the same scrub
    (dropped,) = of_kind(log, "storage_scrub")
    assert dropped["where"] == "iptunnel_xmit" and not dropped["kept"] and dropped["reason"] == "tunnel"
    tail, head, _ = edges[f"to-ev{dropped['seq']}"]
    assert tail == f"ev{scrubs[0]['seq']}" and "storage_a dropped\\ntunnel scrub" in nodes[head][1]
    # the scrub sits on the edge from the writing hook to the next one
    writer = hook(log, "tc/egress", "lk-t")
    assert edges[f"to-ev{scrubs[0]['seq']}"][0] == f"ev{writer['seq']}"


def test_clone_branches_off_dashed_and_both_sides_are_refused():
    log = load("clone-mirred")
    nodes, edges = elements(viz.lifetime_graph(log))
    (clone,) = of_kind(log, "clone")
    branch = [(t, h, a) for t, h, a in edges.values() if "clone by" in a]
    assert len(branch) == 1
    tail, head, attrs = branch[0]
    assert "style=dashed" in attrs and "clone by tcf_mirred_to_dev" in attrs and "skb#2" in attrs
    writer, on_clone = hook(log, "tc/ingress", "lk-b0"), hook(log, "tc/egress", "lk-s")
    # from the tc/ingress that wrote it to the clone's tc/egress on lk-s
    assert tail == f"ev{writer['seq']}" and head == f"ev{on_clone['seq']}"
    refused = viz.STATE["refused"][0]
    for e in (on_clone, hook(log, "cgroup_skb/ingress")):  # the clone and the original after it
        assert f'BGCOLOR="{refused}"' in nodes[f"ev{e['seq']}"][1] and "refused" in nodes[f"ev{e['seq']}"][1]
    attrs = nodes[f"ev{writer['seq']}"][1]
    assert f'BGCOLOR="{refused}"' not in attrs
    assert viz.STATE["created"][0] in attrs and f"{token(log):#x}" in attrs


def test_skbs_get_short_names_and_a_reused_address_is_another_skb():
    log = load("basic-tcp")
    # the allocator may hand packet 2 the same sk_buff; make sure it did here
    first = next(e["skb"] for e in log.events if e.get("packet") == 1)
    log = EventLog([{**e, "skb": first} if e.get("skb") else e for e in log.events], log.header)
    assert len({e["skb"] for e in log.events if e.get("skb")}) == 1
    assert set(viz.skb_names(log).values()) == {"skb#1", "skb#2"}
    assert 'label="skb#2"' in viz.lifetime_graph(log, packet=2).source
    assert "skb#2" not in viz.lifetime_graph(log, packet=1).source


def test_only_slots_used_in_the_run_are_shown_and_mark_when_set():
    basic = viz.lifetime_graph(load("basic-udp")).source
    assert ">storage_a<" in basic and ">storage_b<" not in basic and ">stash<" not in basic and ">mark<" not in basic
    assert ">storage_b<" in viz.lifetime_graph(load("two_maps")).source
    log = load("side_stash-clone")
    stash = viz.lifetime_graph(log).source
    assert ">stash<" in stash and f"present {token(log):#x}" in stash
    log = load("mark_vs_storage-same_netns")
    nodes, _ = elements(viz.lifetime_graph(log))
    for e in of_kind(log, "hook"):  # inside one namespace the mark survives the scrub
        assert ">mark<" in nodes[f"ev{e['seq']}"][1] and "0x5eed" in nodes[f"ev{e['seq']}"][1]
    nodes, _ = elements(viz.lifetime_graph(load("mark_vs_storage-netns")))
    assert "0x5eed" in nodes["ev1"][1] and "0x5eed" not in nodes["ev4"][1]


@pytest.mark.parametrize("name", ["basic-udp", "clone-mirred", "tunnel-gre-before_encap", "netns-veth",
                                  "mark_vs_storage-same_netns", "side_stash-clone", "two_maps"])
def test_every_frame_has_the_same_nodes_and_edges(name):
    log = load(name)
    steps = viz.frames(log)
    assert len(steps) >= 4
    first = elements(viz.lifetime_graph(log))
    sources = set()
    for seq in steps:
        graph = viz.lifetime_graph(log, current=seq)
        nodes, edges = elements(graph)
        assert set(nodes) == set(first[0]) and set(edges) == set(first[1])
        assert {k: v[:2] for k, v in edges.items()} == {k: v[:2] for k, v in first[1].items()}
        assert {k: v[0] for k, v in nodes.items()} == {k: v[0] for k, v in first[0].items()}
        sources.add(graph.source)
    assert len(sources) == len(steps), "frames must differ in colour and weight"


def test_current_step_is_bold_and_later_ones_faded():
    log = load("netns-veth")
    steps = viz.frames(log)
    alloc = of_kind(log, "storage_alloc")[0]["seq"]
    assert alloc not in steps and steps == [e["seq"] for e in log.events if e["seq"] != alloc]  # part of its hook
    cur = steps[3]
    nodes, edges = elements(viz.lifetime_graph(log, current=cur))
    faded = f'color="{viz.FADED[1]}"'
    for e in log.events:
        nid = f"ev{e['seq']}"
        if nid not in nodes:
            continue
        attrs = nodes[nid][1]
        assert ("penwidth=3" in attrs) == (e["seq"] == cur), nid
        assert (faded in attrs) == (e["seq"] > cur), nid
    later = next(s for s in steps if s > cur and f"to-ev{s}" in edges)
    earlier = next(s for s in steps if s < cur and f"to-ev{s}" in edges)
    assert "penwidth=3" in edges[f"to-ev{cur}"][2] and faded in edges[f"to-ev{later}"][2]
    assert faded not in edges[f"to-ev{earlier}"][2]


def test_clone_step_highlights_the_dashed_edge_and_allocation_its_hook():
    log = load("clone-af_packet")
    nodes, edges = elements(viz.lifetime_graph(log, current=2))
    clone_edge = next(a for _, _, a in edges.values() if "clone by dev_queue_xmit_nit" in a)
    assert "penwidth=3" in clone_edge and "dashed,bold" in clone_edge
    assert not any("penwidth=3" in a for _, a in nodes.values())
    nodes, _ = elements(viz.lifetime_graph(log, current=0))  # storage_alloc, folded into tc/egress
    assert "penwidth=3" in nodes["ev1"][1]


def test_frames_and_details():
    log = load("basic-udp")
    for p in (1, 2):
        mine = [e["seq"] for e in log.events if e.get("packet") == p and e["kind"] != "storage_alloc"]
        assert viz.frames(log, packet=p) == mine
    assert viz.frames(log) == viz.frames(log, packet=1)
    with pytest.raises(ValueError, match="packet 3"):
        viz.frames(log, packet=3)
    text = viz.frame_details(log, hook(log, "tc/ingress")["seq"])
    assert "tc/ingress" in text and "created" in text and f"{token(log):#x}" in text and "bpf_skb_storage_get" in text
    gre = load("tunnel-gre-before_encap")
    text = viz.frame_details(gre, of_kind(gre, "scrub")[0]["seq"])
    assert "skb_scrub_packet(xnet=0)" in text and "iptunnel_xmit" in text and "storage with them" in text
    text = viz.frame_details(gre, of_kind(gre, "storage_scrub")[0]["seq"])
    assert "tunnel scrub from iptunnel_xmit() drops the storage_a element" in text and "BPF_F_SKB_KEEP_TUNNEL" in text
    mirred = load("clone-mirred")
    text = viz.frame_details(mirred, of_kind(mirred, "clone")[0]["seq"])
    assert "skb#2 is a clone of skb#1" in text and "tcf_mirred_to_dev" in text
    with pytest.raises(ValueError):
        viz.frame_details(log, 999)


def test_svg_embeds_in_html():
    log = load("side_stash-clone")
    cur = viz.frames(log)[2]
    out = viz.svg(viz.lifetime_graph(log, current=cur))
    assert out.startswith("<svg") and "<?xml" not in out and "DOCTYPE" not in out
    assert f'id="ev{cur}"' in out
    assert "skb_scrub_packet" not in out  # no scrub in this run: the legend does not explain one
    group = out[out.index(f'id="ev{cur}"'):]
    group = group[:group.index("</g>")]
    assert 'stroke-width="3"' in group


def test_svg_without_dot_says_how_to_install_it(monkeypatch):
    from labkit import tools

    monkeypatch.setattr(tools, "which", lambda program: None)
    with pytest.raises(MissingTool) as err:
        viz.svg(viz.lifetime_graph(load("basic-udp")))
    assert "sudo apt-get install graphviz" in str(err.value)


@pytest.mark.parametrize("name,params", scenarios.variants(), ids=lambda v: str(v))
def test_topology_of_every_scenario_renders(name, params):
    sc = scenarios.get(name, **params)
    out = html.unescape(viz.svg(viz.topology_graph(sc)))  # dot writes "-" as &#45;
    assert out.startswith("<svg")
    for ns in sc.topology.netns:
        assert f">lk-{ns}<" in out
    for (ns, dev), _ in sc.topology.devices().items():
        if dev != "lo":
            assert f">{dev}<" in out
    for t in sc.topology.tunnels:
        assert f"{t.kind} tunnel" in out
    for h in sc.hooks:
        assert h.at in out
    if sc.mirrors:
        assert "tc mirred mirror" in out
    if sc.taps:
        assert "AF_PACKET tap" in out
    if any(h.clone_to for h in sc.hooks):
        assert "bpf_clone_redirect" in out
    assert "send 1 × " in out or "send 2 × " in out


def test_topology_draws_writes_and_links():
    graph = viz.topology_graph(scenarios.get("tunnel", kind="vxlan", create="before_encap"))
    nodes, _ = elements(graph)
    assert "tc/egress: write storage_a" in nodes["a__lk_t"][1] and "tc/egress: observe" in nodes["a__lk_a0"][1]
    assert nodes["a__lk_t"][0] == "cluster_a" and nodes["b__sock"][0] == "cluster_b"
    assert 'a__lk_t -> b__lk_t [label="vxlan tunnel"' in graph.source
    assert "a__lk_a0 -> b__lk_b0 [label=veth" in graph.source
    assert "src0 -> a__lk_t" in graph.source and "b__lk_t -> b__sock" in graph.source


def test_import_labkit_stays_light():
    code = "import sys, labkit, labkit.viz; print('graphviz' in sys.modules, 'ipywidgets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT)
    assert out.stdout.split() == ["False", "False"]


# ---- widgets ---------------------------------------------------------------------------------------


def test_explorer_follows_its_slider():
    from labkit.course.explorer import Explorer

    log = load("netns-veth")
    steps = viz.frames(log)
    x = Explorer(log, title="veth")
    # counted from 1, like the pane's "step 1 of 7"
    assert (x.slider.min, x.slider.max, x.slider.value) == (1, len(steps), 1) and x.seq == steps[0]
    assert (x.play.min, x.play.max) == (1, len(steps)) and f"step 1 of {len(steps)}" in x.details.value
    before_svg, before_details = x.svg_html.value, x.details.value
    x.slider.value = 2  # the scrub at the veth
    assert x.seq == steps[1] and x.svg_html.value != before_svg and x.details.value != before_details
    assert "__dev_forward_skb2" in x.details.value and f"step 2 of {len(steps)}" in x.details.value
    group = x.svg_html.value[x.svg_html.value.index(f'id="ev{steps[1]}"'):]
    assert 'stroke-width="3"' in group[:group.index("</g>")]
    x.next_button.click()  # the tracepoint: the scrub drops storage_a
    assert x.slider.value == 3 and "drops the storage_a element" in x.details.value
    x.go(99)
    assert x.slider.value == len(steps) and x.seq == steps[-1] and f"step {len(steps)} of" in x.details.value
    x.prev_button.click()
    assert x.slider.value == len(steps) - 1
    x.go(-5)
    assert x.slider.value == 1 and x.seq == steps[0]
    assert x.packet_menu is None and not x.slider.disabled


def test_explorer_packet_menu_and_cache(monkeypatch):
    from labkit.course.explorer import Explorer

    log = load("basic-udp")
    x = Explorer(log)
    assert x.packet_menu is not None and x.steps == viz.frames(log, packet=1)
    x.slider.value = 3
    x.packet_menu.value = 2
    assert x.steps == viz.frames(log, packet=2) and x.slider.value == 1 and "packet 2" in x.details.value
    assert x.slider.max == len(x.steps)
    calls = []
    real = viz.svg
    monkeypatch.setattr(viz, "svg", lambda g: calls.append(1) or real(g))
    for step in (2, 1, 2, 1):  # step 1 of packet 2 is already drawn
        x.slider.value = step
    assert len(calls) == 1
    x.packet_menu.value = 1  # packet 1's steps 1 and 3 were drawn before
    x.slider.value = 3
    assert len(calls) == 1


def test_side_by_side_shares_one_slider():
    from labkit.course.explorer import SideBySide

    gre, veth = load("tunnel-gre-before_encap"), load("netns-veth")
    left, right = viz.frames(gre), viz.frames(veth)
    assert len(left) > len(right)
    s = SideBySide(gre, veth, titles=("gre", "veth"))
    assert (s.slider.min, s.slider.max, s.slider.value) == (1, len(left), 1)
    s.slider.value = 4
    first, second = s.sides
    assert first.slider.value == 4 and second.slider.value == 4
    assert first.seq == left[3] and second.seq == right[3]
    s.slider.value = s.slider.max
    assert second.slider.value == len(right) and second.seq == right[-1]  # the shorter run stays at its end
    assert "gre" in first.children[0].value and "veth" in second.children[0].value


def test_rerun_calls_the_runner_and_shows_its_failure():
    from labkit.course.explorer import Explorer, Rerun
    from labkit.errors import LabError

    calls = []

    def run(kind, create):
        calls.append((kind, create))
        if kind == "geneve":
            raise LabError("the lab VM is not running", fix="run: labkit vm start")
        return load(f"tunnel-{kind}-{create}")

    r = Rerun(run, {"kind": ["gre", "vxlan", "geneve"], "create": ["before_encap", "outer"]},
              {"kind": "vxlan", "create": "outer"})
    assert r.explorer is None and calls == []
    r.button.click()
    assert calls == [("vxlan", "outer")] and isinstance(r.explorer, Explorer)
    assert r.explorer.eventlog.header["params"] == {"create": "outer", "kind": "vxlan"}
    assert r.area.children == (r.explorer,) and r.error.value == ""
    good = r.explorer
    r.dropdowns["kind"].value = "geneve"
    r.button.click()
    assert calls[-1] == ("geneve", "outer")
    assert "the lab VM is not running -- run: labkit vm start" in r.error.value
    assert "Traceback" not in r.error.value and r.explorer is good
    assert not r.button.disabled and r.button.description == "Run"


# ---- fitting the output, keep-scrubs, one output per graph ----------------------------------------


def test_svg_shrinks_to_the_output_width_and_keeps_its_proportions():
    for graph in (viz.topology_graph(scenarios.get("tunnel", kind="gre", create="before_encap")),
                  viz.lifetime_graph(load("tunnel-gre-before_encap"))):
        out = viz.svg(graph)
        root = out[:out.index(">")]
        assert 'style="max-width:100%;height:auto"' in root and root.count("style=") == 1
        assert re.search(r'viewBox="[\d.]+ [\d.]+ [\d.]+ [\d.]+"', root)
        assert re.search(r'width="\d+pt"', root)  # its own size where there is room: no blowing up
        bundle = graph._repr_mimebundle_()  # a graph left as a cell's value: HTML, which JupyterLab prefers
        assert bundle["text/html"] == viz.figure_html(out) and "max-width:100%" in bundle["text/html"]
        assert bundle["image/svg+xml"] == out


def test_a_scrub_that_keeps_storage_is_drawn_and_explained_as_keeping_it():
    log = load("tunnel-gre-before_encap-keep_tunnel")  # kept by the tunnel, dropped by the veth into lk-b
    scrubs = of_kind(log, "scrub")
    tunnel, veth = scrubs[0], scrubs[1]
    assert (tunnel["where"], veth["where"]) == ("iptunnel_xmit", "__dev_forward_skb2")
    said = viz.scrub_outcomes(log)
    assert said[tunnel["seq"]] == {"kept": [("storage_a", "tunnel")], "dropped": []}
    assert said[veth["seq"]] == {"kept": [], "dropped": [("storage_a", "netns")]}
    assert [viz.scrub_kind(said[s["seq"]]) for s in scrubs] == ["keeps", "drops", "drops", "drops"]
    nodes, _ = elements(viz.lifetime_graph(log))
    keep_node, drop_node = nodes[f"ev{tunnel['seq']}"][1], nodes[f"ev{veth['seq']}"][1]
    assert f'fillcolor="{viz.KEPT}"' in keep_node and "keeps storage_a" in keep_node
    assert f'fillcolor="{viz.SCRUB}"' in drop_node and "drops storage_a" in drop_node
    rows = viz.lifetime_rows([said[s["seq"]] for s in scrubs],
                             {"states": set(), "notes": set(), "clone": False, "slot": "storage_a"})
    scrub_rows = [(fill, text) for key, (fill, _), text in rows if key == "skb_scrub_packet()"]
    assert scrub_rows == [(viz.SCRUB, "drops the extensions: storage gone"),
                          (viz.KEPT, "keeps storage_a (BPF_F_SKB_KEEP_TUNNEL)")]
    legend = html.unescape(nodes["legend"][1])
    assert "keeps storage_a (BPF_F_SKB_KEEP_TUNNEL)" in legend and viz.KEPT in legend
    text = viz.frame_details(log, tunnel["seq"])
    assert "storage_a is kept" in text and "BPF_F_SKB_KEEP_TUNNEL" in text and "storage with them" not in text
    assert "storage with them" in viz.frame_details(log, veth["seq"])


def test_a_graph_whose_scrubs_all_keep_has_no_red_in_its_legend():
    log = load("tunnel-gre-before_encap-keep_tunnel+keep_netns")
    said = viz.scrub_outcomes(log)
    assert said and all(viz.scrub_kind(o) == "keeps" for o in said.values())
    legend = html.unescape(elements(viz.lifetime_graph(log))[0]["legend"][1])
    assert "keeps storage_a (BPF_F_SKB_KEEP_TUNNEL, BPF_F_SKB_KEEP_NETNS)" in legend
    assert viz.SCRUB not in legend and "storage gone" not in legend
    plain = html.unescape(elements(viz.lifetime_graph(load("tunnel-gre-before_encap")))[0]["legend"][1])
    assert "storage gone" in plain and viz.KEPT not in plain  # no flag: as before
    assert viz.scrub_rows([]) == [viz.DROPS]  # no scrub in the graph: the red node is still explained


def test_a_scrub_that_keeps_one_map_and_drops_another_is_both():
    from labkit.runtime.events import EventLog

    skb = "0xffff0001"
    log = EventLog([{"seq": 0, "kind": "hook", "hook": "tc/egress", "ifname": "lk-t", "packet": 1, "skb": skb,
                     "ns": "a",
                     "maps": {"storage_a": {"state": "created", "value": 5}, "storage_b": {"state": "created"}}},
                    {"seq": 1, "kind": "scrub", "packet": 1, "skb": skb, "where": "iptunnel_xmit", "xnet": False},
                    {"seq": 2, "kind": "storage_scrub", "packet": 1, "skb": skb, "where": "iptunnel_xmit",
                     "map": "storage_a", "kept": True, "reason": "tunnel"},
                    {"seq": 3, "kind": "storage_scrub", "packet": 1, "skb": skb, "where": "iptunnel_xmit",
                     "map": "storage_b", "kept": False, "reason": "tunnel"}])
    said = viz.scrub_outcomes(log)
    assert viz.scrub_kind(said[1]) == "some"
    nodes, _ = elements(viz.lifetime_graph(log))
    node = nodes["ev1"][1]
    assert "striped" in node and "keeps storage_a" in node and "drops storage_b" in node
    assert "keeps storage_a (BPF_F_SKB_KEEP_TUNNEL), drops the rest" in html.unescape(nodes["legend"][1])
    text = viz.frame_details(log, 1)
    assert "storage_a is kept" in text and "storage_b is dropped" in text
    assert viz.svg(viz.lifetime_graph(log)).startswith("<svg")


def test_widgets_are_one_output_with_the_whole_graph_as_fallback():
    from labkit.course.explorer import Explorer, Rerun, SideBySide
    from labkit.runtime.events import EventLog

    log = load("tunnel-gre-before_encap-keep_tunnel")
    x = Explorer(log, title="GRE <kept>")
    bundle = x._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == x.model_id
    static = bundle["text/html"]
    assert static.startswith("<h4") and "GRE &lt;kept&gt;" in static and "max-width:100%" in static
    assert static.count("<svg") == 1 and 'stroke-width="3"' not in static  # nothing highlighted, nothing faded
    assert viz.FADED[0] not in static
    s = SideBySide(load("tunnel-gre-before_encap"), log, titles=("plain", "kept"))
    assert s._repr_mimebundle_()["text/html"].count("<svg") == 2
    r = Rerun(lambda **p: log, {"kind": ["gre"]})
    assert "press Run" in r._repr_mimebundle_()["text/html"]
    empty = Explorer(EventLog([], {"scenario": "basic"}))  # no packet: one step, nothing to move
    assert (empty.slider.min, empty.slider.max, empty.seq) == (1, 1, None) and empty.slider.disabled
    assert "no packet" in empty._repr_mimebundle_()["text/html"]


def test_lesson_shows_each_graph_once_and_pick_replaces_its_run(monkeypatch):
    import IPython.display

    from labkit.course import lesson as lesson_mod
    from labkit.course.explorer import Explorer, Rerun, SideBySide

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    monkeypatch.setattr(lesson_mod, "live_possible", lambda: (False, "no VM in unit tests"))
    lab = lesson_mod.Lesson("replay")
    ex = lab.show(lab.run("tunnel", kind="gre", create="before_encap"))
    assert isinstance(shown[-1], Explorer) and shown[-1] is ex
    assert not any(isinstance(o, IPython.display.SVG) for o in shown)  # no static copy above it
    shown.clear()
    lab.compare(load("netns-veth"), load("netns-veth-keep_netns"), titles=("a", "b"))
    assert len(shown) == 1 and isinstance(shown[0], SideBySide)
    shown.clear()
    view = lab.pick("tunnel", {"kind": ["gre", "vxlan"], "create": ["before_encap"]},
                    {"kind": "gre", "create": "before_encap"})
    assert shown == [view] and isinstance(view, Rerun)
    first = view.explorer
    assert view.area.children == (first,) and first.eventlog.header["params"]["kind"] == "gre"
    view.dropdowns["kind"].value = "vxlan"
    view.button.click()
    assert view.area.children == (view.explorer,) and view.explorer is not first  # replaced, not stacked
    assert view.explorer.eventlog.header["params"]["kind"] == "vxlan" and shown == [view]
    shown.clear()
    logs = lab.designs("clone", kind="mirred")  # one scenario, the three designs, one slider
    assert list(logs) == ["storage", "meta", "gated"] and len(shown) == 1 and isinstance(shown[0], SideBySide)
    assert [side.eventlog for side in shown[0].sides] == list(logs.values())
    assert [log.header["params"].get("design") for log in logs.values()] == [None, "meta", "gated"]
    assert all(side.legend_below for side in shown[0].sides)  # three in a row: each legend under its graph
    with pytest.raises(Exception, match="there is no recording of clone"):  # replay has the recorded variants only
        lab.run("clone", kind="mirred", design="stash")


DESIGNED = [scenarios.recording_path(n, {**p, "design": d}).stem for n, p, d in scenarios.designed_variants()]


@pytest.mark.parametrize("name", DESIGNED)
def test_the_later_designs_are_drawn_in_the_same_language(name):
    """A run of the metadata buffer or the gated stash: its slot on every hook (and no empty storage_a row),
    every tracepoint event of the design a note or part of its hook, each scrub green where the design's
    data went through it, and a legend of what the graph shows."""
    log = load(name)
    design = log.header["params"]["design"]
    nodes, edges = elements(viz.lifetime_graph(log))
    source = viz.lifetime_graph(log).source
    assert viz.slots_of(log)[0] == [design]
    hooks = of_kind(log, "hook")
    for e in hooks:
        assert f">{design}<" in nodes[f"ev{e['seq']}"][1] and ">storage_a<" not in nodes[f"ev{e['seq']}"][1]
    mine = [e for e in log.events if e["kind"].startswith(design + "_")]
    assert mine, f"{name}: no {design} tracepoint event"
    made = "meta_create" if design == "meta" else "gated_arm"
    said = {"meta": "bpf_dynptr_from_skb_ext(F_CREATE) made the buffer", "gated": "bpf_trace_skb() = 0: armed"}
    assert said[design] in source, "the hook that made the data does not say so"
    for e in mine:
        if e["kind"] != made and f"ev{e['seq']}" not in nodes:  # folded: the old block of a buffer that moved
            assert e["kind"] == "meta_free" and any(
                x["kind"] in ("meta_scrub", "meta_copy") and x.get("from") == e["block"] for x in mine), e
    outcomes = viz.scrub_outcomes(log)
    for s in of_kind(log, "scrub"):
        assert viz.scrub_kind(outcomes[s["seq"]]) == "keeps", f"{name}: the scrub at {s['where']} is not green"
        assert f"keeps {design}" in nodes[f"ev{s['seq']}"][1]
    legend = html.unescape(nodes["legend"][1])
    assert ("storage gone" in legend) is False and ("refused" in legend) is False
    assert ("skb_scrub_packet()" in legend) == bool(of_kind(log, "scrub"))
    assert ("clone: new skb" in legend) == any(e["kind"] == "clone" for e in log.events)
    assert {"meta": "bpf_skb_ext tracepoints", "gated": "gated tracepoints"}[design] in legend
    for s in viz.frames(log):  # every step has a details pane that reads as the design's
        text = viz.frame_details(log, s)
        assert "refused on both" not in text, text
