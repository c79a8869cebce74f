"""Reveals come from facts asked of logs: the rules on the committed recordings,
the reveal's metadata, and the lesson text's claims about which kernel functions scrub."""

import json
import re

import pytest

from labkit import paths
from labkit.course import facts
from labkit.errors import LabError
from labkit.runtime.events import EventLog

DATA = paths.PROJECT / "notebooks" / "data"


def rec(name):
    log = EventLog.load(DATA / f"{name}.jsonl")
    log.header["replay"] = f"notebooks/data/{name}.jsonl"
    return log


def test_state_at_reads_the_first_pass_and_names_it():
    f = facts.ask("state_at", rec("clone-af_packet"), hook="af_packet")
    assert f.value == "refused" and f.sources == {"": "notebooks/data/clone-af_packet.jsonl"}
    assert "refused at af_packet" in f.notes[0]
    assert facts.again(f.meta()) == "refused"


def test_a_set_fact_can_be_empty_and_asks_again_the_same():
    runs = {k: rec(f"tunnel-{k}-before_encap") for k in ("gre", "vxlan")}
    f = facts.ask("state_at", runs, ifname="lk-a0", equals="present")
    assert f.value == set() and facts.again(f.meta()) == []
    kept = facts.ask("state_at", {"veth": rec("netns-veth-keep_netns"), "same": rec("netns-same_netns-keep_netns")},
                     hook="cgroup_skb/ingress", equals="present")
    assert kept.value == {"veth"}


def test_a_hook_the_packet_never_passed_is_an_error_not_an_answer():
    with pytest.raises(LabError, match="never passed"):
        facts.ask("state_at", rec("basic-udp"), hook="af_packet")


def test_again_reads_the_source_not_the_value_it_was_given():
    meta = facts.ask("state_at", rec("clone-af_packet"), hook="af_packet").meta()
    meta["value"] = "present"  # what a reveal computed from something else would claim
    assert facts.again(meta) == "refused"


def test_verdict_and_cost_rules():
    v = json.loads((DATA / "verdict-02_api_and_verifier-fixme.json").read_text())
    assert facts.ask("verdict", v).value == "refused"
    res = {"designs": {"a": {"write": {"ns": {"median": 100}}}, "b": {"write": {"ns": {"median": 110}}}}}
    assert facts.ask("costlier", res, a="a", b="b").value == "same"
    res["designs"]["b"]["write"]["ns"]["median"] = 300
    assert facts.ask("costlier", res, a="a", b="b").value == "b"


# Functions a lesson may name near a scrub without the recordings showing them as a caller:
# the scrub itself, what it calls, the crossings that lead to one, and skb_clone() (probed next to it).
NOT_CALLERS = {"skb_scrub_packet", "skb_ext_reset", "skb_scrub_packet_reason", "bpf_redirect_peer", "__dev_forward_skb",
              "skb_clone"}


def test_lesson_text_names_only_scrub_callers_the_recordings_show():
    """A paragraph about scrubs may name a kernel function as the caller only if a recording saw it call."""
    seen = set()
    for p in DATA.glob("*.jsonl"):
        seen |= {e.get("where") for e in EventLog.load(p) if e["kind"] in ("scrub", "storage_scrub")}
    wrong = []
    for nb in sorted((paths.PROJECT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for para in "".join(cell["source"]).split("\n\n"):
                if "scrub" in para:
                    wrong += [f"{nb.stem}: {fn}()" for fn in re.findall(r"`([A-Za-z_]\w*)\(\)`", para)
                              if fn not in seen | NOT_CALLERS]
    assert not wrong, f"named as scrubbing but no recording shows it: {wrong}"
