"""The scenario library: one small module per lesson topic.

``get(name, **params)`` builds a ``Scenario``; ``NAMES`` lists them and
``variants()`` every parameter combination the tests and recordings cover.
"""

from __future__ import annotations

import importlib

from labkit.scenario import ScenarioError

NAMES = ("basic", "clone", "netns", "tunnel", "mark_vs_storage", "two_maps", "side_stash")


def module(name):
    if name not in NAMES:
        raise ScenarioError(f"no scenario named {name!r}", fix=f"use one of {', '.join(NAMES)}")
    return importlib.import_module(f"labkit.scenarios.{name}")


def get(name: str, **params):
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


def recording_path(name: str, params: dict):
    """Where the recording of a variant lives: notebooks/data/NAME[-VALUE...].jsonl."""
    from labkit import paths

    stem = "-".join([name] + [str(v) for v in params.values()])
    return paths.PROJECT / "notebooks" / "data" / f"{stem}.jsonl"
