"""The bpf_skb_storage lifecycle tracepoints (kernel patch 0007).

The runtime's storage events come from them on the lab kernel; these
tests check each one against what the packet did, and the text format
that ftrace users (trace-cmd, perf) read.
"""

import os
import subprocess
from dataclasses import replace

import pytest

from labkit import scenarios
from labkit.runtime import run as runtime
from labkit.runtime import symbols
from labkit.runtime.events import at, expect, step

from .test_flags import deleting_at_socket

TRACEFS = "/sys/kernel/tracing"
EVENTS = ("skb_storage_create", "skb_storage_clone", "skb_storage_scrub", "skb_storage_free")


def test_the_runtime_uses_the_tracepoints():
    assert symbols.storage_tracepoints(), "the lab kernel has no bpf_skb_storage tracepoints in its BTF"
    progs = symbols.lifecycle_programs()
    assert set(symbols.STORAGE_TRACEPOINTS) <= set(progs)
    assert not set(symbols.STORAGE_KPROBES) & set(progs)
    log = runtime.run(scenarios.get("netns", path="veth"))
    storage = [e for e in log.events if e["kind"].startswith("storage_")]
    assert storage and all(e.get("via") == "tracepoint" for e in storage), log.timeline()


def test_create_and_free_with_the_skb():
    log = runtime.run(scenarios.get("tunnel", kind="gre", create="after_decap"))
    created, hook, freed = expect(log, (
        step("storage_alloc", map="storage_a", where="bpf_skb_storage_get"),
        at("tc/ingress", "lk-t", storage_a="created", same_skb=True),
        step("storage_free", map="storage_a", same_skb=True)))
    assert hook["maps"]["storage_a"]["value"] == log.header["tokens"][0]
    assert freed["t_us"] > hook["t_us"]
    assert len([e for e in log.events if e["kind"] == "storage_alloc"]) == 1


def test_free_by_delete_names_the_skb():
    log = runtime.run(deleting_at_socket())
    created, deleted, after = expect(log, (
        at("tc/ingress", "lk-t", storage_a="created"),
        step("storage_free", map="storage_a", where="bpf_skb_storage_delete", same_skb=True),
        at("cgroup_skb/ingress", storage_a="absent", same_skb=True)))
    assert deleted["skb"] == created["skb"]
    assert len([e for e in log.events if e["kind"] == "storage_free"]) == 1, "deleted once, not freed again"


def test_scrub_names_its_call_site_and_reason():
    log = runtime.run(scenarios.get("netns", path="redirect_peer"))
    scrub, dropped = expect(log, (
        step("scrub", where="skb_do_redirect"),
        step("storage_scrub", map="storage_a", same_skb=True)))
    assert (dropped["where"], dropped["reason"], dropped["kept"], dropped["xnet"]) == (
        "skb_do_redirect", "netns", False, False)


@pytest.fixture
def tracefs():
    if not os.path.isdir(os.path.join(TRACEFS, "events")):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)
    enable = os.path.join(TRACEFS, "events", "bpf_skb_storage", "enable")
    assert os.path.exists(enable), "no bpf_skb_storage events in tracefs"

    def write(path, text):
        with open(os.path.join(TRACEFS, path), "w") as fh:
            fh.write(text)

    write("trace", "")
    write("events/bpf_skb_storage/enable", "1")
    try:
        yield lambda: open(os.path.join(TRACEFS, "trace")).read()
    finally:
        write("events/bpf_skb_storage/enable", "0")
        write("trace", "")


def test_text_format_for_ftrace_users(tracefs):
    sc = scenarios.get("clone", kind="bpf_clone_redirect").with_flags(storage_a=("clone",))
    runtime.run(replace(sc, expect=()))
    sc = scenarios.get("netns", path="veth").with_flags(storage_a=("keep_netns",))
    runtime.run(sc)
    text = tracefs()
    for ev in EVENTS:
        assert f"{ev}:" in text, f"no {ev} line in the trace:\n{text[-3000:]}"
    scrubs = [line for line in text.splitlines() if "skb_storage_scrub:" in line]
    assert any("location=__dev_forward_skb2" in s and "reason=netns" in s and s.rstrip().endswith("kept")
               for s in scrubs), "\n".join(scrubs)
    assert "map_id=" in text
