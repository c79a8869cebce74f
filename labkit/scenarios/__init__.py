"""The scenario library: one small module per lesson topic.

``get(name, flags=None, **params)`` builds a ``Scenario``; ``NAMES`` lists
them, ``variants()`` every parameter combination the tests and recordings
cover, and ``FLAGGED`` the variants also recorded with map flags on
storage_a (the lab kernel's BPF_F_CLONE and keep flags, lesson 08), and
``DESIGNED`` those also recorded with the designs that came after the RFC
(the metadata buffer and the gated stash, lesson 10).
"""

from __future__ import annotations

import importlib

from labkit.runtime.parts import ScenarioError

NAMES = ("basic", "clone", "netns", "tunnel", "mark_vs_storage", "two_maps", "side_stash")


def module(name):
    if name not in NAMES:
        raise ScenarioError(f"no scenario named {name!r}", fix=f"use one of {', '.join(NAMES)}")
    return importlib.import_module(f"labkit.scenarios.{name}")


# Variants recorded (and tested against the kernel) with flags on storage_a.
FLAGGED = (
    ("clone", {"kind": "mirred"}, ("clone",)),
    ("clone", {"kind": "bpf_clone_redirect"}, ("clone",)),
    ("clone", {"kind": "af_packet"}, ("clone",)),
    *(("tunnel", {"kind": k, "create": "before_encap"}, f) for k in ("gre", "ipip", "vxlan", "geneve")
      for f in (("keep_tunnel",), ("keep_netns",), ("keep_tunnel", "keep_netns"))),
    *(("netns", {"path": p}, ("keep_netns",)) for p in ("veth", "same_netns", "redirect_peer")),
)


# Variants recorded (and shown side by side in lesson 10) with each design after the RFC.
DESIGNED = tuple((n, p, d) for n, p in (
    *(("clone", {"kind": k}) for k in ("mirred", "af_packet", "bpf_clone_redirect")),
    *(("tunnel", {"kind": k, "create": "before_encap"}) for k in ("gre", "ipip", "vxlan", "geneve")),
    *(("netns", {"path": p}) for p in ("veth", "same_netns", "redirect_peer"))) for d in ("meta", "gated"))


def parse_flags(flags) -> tuple:
    """storage_a's flags from "none", "keep_tunnel+keep_netns", a name or a sequence of names."""
    if not flags or flags == "none":
        return ()
    if isinstance(flags, str):
        return tuple(flags.split("+"))
    return tuple(flags)


def get(name: str, flags=None, design=None, **params):
    """The scenario; with flags (for storage_a), its expected path is left
    out: the flags change it, and tests/lab/test_flags.py checks how. design:
    another design keeps storage_a's token (``Scenario.with_design``)."""
    if design and design != "storage":
        return get(name, flags=flags, **params).with_design(design)
    flags = parse_flags(flags)
    if flags:
        from dataclasses import replace

        return replace(get(name, **params).with_flags(storage_a=flags), expect=())
    mod = module(name)
    known = getattr(mod, "PARAMS", {})
    for k, v in params.items():
        if k not in known:
            raise ScenarioError(f"scenario {name} has no parameter {k!r}",
                                fix="parameters: " + (", ".join(f"{p} ({'|'.join(map(str, c))})"
                                                                for p, c in known.items()) or "none"))
        if str(v) not in [str(c) for c in known[k]]:
            raise ScenarioError(f"scenario {name}: {k}={v} is not one of {', '.join(map(str, known[k]))}")
        params[k] = next(c for c in known[k] if str(c) == str(v))
    return mod.build(**params)


def variants():
    """(name, params) for every scenario and every combination of its parameters."""
    import itertools

    out = []
    for name in NAMES:
        params = getattr(module(name), "PARAMS", {})
        keys = list(params)
        for combo in itertools.product(*(params[k] for k in keys)):
            out.append((name, dict(zip(keys, combo))))
    return out


def flagged_variants():
    """(name, params, flags) of FLAGGED."""
    return [(n, dict(p), f) for n, p, f in FLAGGED]


def designed_variants():
    """(name, params, design) of DESIGNED."""
    return [(n, dict(p), d) for n, p, d in DESIGNED]


def recording_path(name: str, params: dict, flags=None):
    """Where the recording of a variant lives: notebooks/data/NAME[-VALUE...][-FLAG+FLAG].jsonl (a design
    after the RFC is the last of the params: clone-mirred-meta.jsonl)."""
    from labkit import paths

    flags = parse_flags(flags)
    stem = "-".join([name] + [str(v) for v in params.values()] + (["+".join(flags)] if flags else []))
    return paths.shipped("notebooks/data") / f"{stem}.jsonl"
