"""What a prediction's reveal says, derived from the kernel's own record.

A reveal (``labkit.course.predict.Predict.reveal``) must never say something the
kernel did not do. So the lessons do not compute a reveal's answer in
free-form code: they ask a **fact** of a log (an ``EventLog`` from a live run
or its recording, a benchmark result, a verifier verdict), by the name of a
rule in this module and its arguments:

    fact = facts.ask("state_at", log, hook="af_packet", map="storage_a")
    guess.reveal(fact, answers={"refused": "a refusal ...", "absent": "nothing ..."})

The fact keeps the rule, the arguments and where each log came from (its
recording under notebooks/data/, or the copy a live run saved under
``$LABKIT_LOG_DIR``), and the reveal carries them in its output's metadata.
The notebook tests load that same source and ask the rule again: a reveal
that does not follow from its log fails them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from labkit import paths
from labkit.errors import LabError

LOG_DIR_ENV = "LABKIT_LOG_DIR"  # live runs keep a copy of each log there (the notebook tests set it)
RULES = {}


def rule(fn):
    RULES[fn.__name__] = fn
    return fn


@dataclass
class Fact:
    rule: str
    args: dict
    sources: dict  # key -> where the log came from (a path), or None when it was not kept
    value: object = None
    notes: list = field(default_factory=list)  # what the rule saw, for the reveal's "why"

    def meta(self) -> dict:
        return {"rule": self.rule, "args": self.args, "sources": self.sources, "value": _plain(self.value)}


def _plain(v):
    return sorted(v) if isinstance(v, (set, frozenset)) else v


def source_of(obj):
    """Where a log, a benchmark result or a verdict came from: a path relative to the project when it is in it."""
    head = obj.header if hasattr(obj, "header") else obj if isinstance(obj, dict) else {}
    where = head.get("replay") or head.get("saved")
    return str(where) if where else None


def load_source(where):
    """The log behind a fact's source (the notebook tests ask the rule again on it)."""
    path = Path(where)
    if not path.is_absolute():
        path = paths.shipped(path)
    if path.suffix == ".jsonl":
        from labkit.runtime.events import EventLog

        return EventLog.load(path)
    return json.loads(path.read_text())


def ask(name, logs, **args) -> Fact:
    """The fact ``name`` of one log; with ``equals=``, of each log in a dict {key: log},
    and the value is the set of keys where the rule's answer equals it."""
    fn = RULES[name]
    if "equals" in args:
        equals = args.pop("equals")
        notes, value = [], set()
        for key, log in logs.items():
            v, seen = fn(log, **args)
            notes.append(f"{key}: {seen}")
            if v == equals:
                value.add(key)
        return Fact(name, {**args, "equals": equals}, {k: source_of(v) for k, v in logs.items()}, value, notes)
    value, seen = fn(logs, **args)
    return Fact(name, args, {"": source_of(logs)}, value, [seen])


def again(meta: dict):
    """Ask a fact again from its metadata, on the sources it names: its value."""
    args = dict(meta["args"])
    srcs = meta["sources"]
    if "equals" not in args:
        return _plain(RULES[meta["rule"]](load_source(srcs[""]), **args)[0])
    equals = args.pop("equals")
    return sorted(k for k, where in srcs.items() if RULES[meta["rule"]](load_source(where), **args)[0] == equals)


# ---- rules: each returns (value, what it saw) ----------------------------------------


def _hooks(log, hook=None, ifname=None, packet=None):
    return [e for e in log if e["kind"] == "hook" and hook in (None, e["hook"]) and (ifname is None or e.get("ifname") == ifname)
            and (packet is None or e.get("packet") == packet)]


@rule
def state_at(log, hook=None, ifname=None, map="storage_a", packet=None):
    """The map's storage state at the first pass through a hook (any hook when None) on a device;
    map="design": the slot of the run's design."""
    map = log.design_slot() if map == "design" else map
    seen = _hooks(log, hook, ifname, packet)
    where = f"{hook or seen[0]['hook'] if seen else hook}{' on ' + ifname if ifname else ''}"
    if not seen:
        raise LabError(f"the log never passed {where}", fix="check the scenario: the hook is not on the packet's path")
    state = seen[0]["maps"][map]["state"]
    return state, f"{map} {state} at {where}"


@rule
def states_after(log, skip_hook, map="storage_a", packet=1):
    """The map's storage states at every hook but one, for one packet: 'present' when all agree."""
    seen = [e for e in log if e["kind"] == "hook" and e["hook"] != skip_hook and e.get("packet") == packet]
    states = sorted({e["maps"][map]["state"] for e in seen})
    value = states[0] if len(states) == 1 else "mixed"
    return value, "; ".join(f'{e["hook"]}: {e["maps"][map]["state"]}' for e in seen)


@rule
def last_present(log, places, map="storage_a"):
    """The last of places ([hook, ifname or None, name]) where the map's storage was there;
    map="design": the slot of the run's design."""
    map = log.design_slot() if map == "design" else map
    last = None
    for e in log:
        for hook, dev, name in places:
            if e["kind"] == "hook" and e["hook"] == hook and (dev is None or e.get("ifname") == dev) \
                    and e["maps"][map]["state"] in ("created", "present"):
                last = name
    return last, f"{map} last there at {last or 'no place'}"


@rule
def costlier(res, a, b, phase="write", within=0.15):
    """Which of two benchmark designs costs more per packet (the median, in the results' unit: ns or
    guest instructions); 'same' when within a fraction."""
    from labkit.bench.plot import unit as unit_of

    d = res["designs"]
    unit = unit_of(res)
    x, y = d[a][phase]["ns"]["median"], d[b][phase]["ns"]["median"]
    value = "same" if abs(x - y) < within * max(x, y) else a if x > y else b
    return value, f"{a} {phase} {x:.0f} {unit}, {b} {phase} {y:.0f} {unit}"


@rule
def verdict(res):
    """Whether the verifier accepted a program, and the line it stopped at."""
    return ("accepted" if res["ok"] else "refused"), (res.get("reason") or "accepted")


def keep(obj, name):
    """Save a live log or result under $LABKIT_LOG_DIR (when set) and note where in it; returns obj."""
    import os

    root = os.environ.get(LOG_DIR_ENV)
    if not root:
        return obj
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = len(list(root.iterdir()))
    if hasattr(obj, "save"):
        path = obj.save(root / f"{n:03d}-{name}.jsonl")
        obj.header["saved"] = str(path)
    else:
        path = root / f"{n:03d}-{name}.json"
        obj["saved"] = str(path)
        path.write_text(json.dumps(obj))
    return obj


# ---- the verifier's verdict on a lesson's own program ---------------------------------


def starter(lesson: str, name: str) -> str:
    """The body of the lesson's ``%%bpf name`` exercise cell as committed (never the learner's copy of it)."""
    from labkit.course import coach

    first, _, body = coach.starter(lesson).partition("\n")
    if first.split()[:2] != ["%%bpf", name]:
        raise LabError(f"lesson {lesson}'s exercise cell is not %%bpf {name}")
    return body


def verdict_path(lesson, name) -> Path:
    return paths.shipped("notebooks/data") / f"verdict-{lesson}-{name}.json"


def verifier_verdict(lab, lesson, name, record=False) -> dict:
    """The lab kernel's verifier on the lesson's own ``%%bpf name`` program: live, it is
    compiled and loaded now; in replay, the recording (``record=True`` writes it)."""
    if not lab.live:
        path = verdict_path(lesson, name)
        try:
            res = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"no recorded verdict for {lesson} {name} ({exc})", fix="run the lesson live: ./lab open")
        res["replay"] = paths.shown(path)
        return res
    from labkit.course.bpfcell import compile_cell, verify

    lab.start()
    cell = compile_cell(f"starter_{name}", starter(lesson, name))
    if cell.ok:
        verify(cell, lab)
    lines = (cell.error or "").splitlines()
    import re

    found = [m.group(0) for ln in lines for m in [re.search(r"R\d+ invalid mem access '[^']*'|error: .*", ln)] if m]
    reason = found[0] if found else (lines[-1].strip() if lines else "")
    res = {"lesson": lesson, "cell": name, "ok": cell.ok, "stage": cell.stage, "reason": reason}
    if record:
        release = getattr(lab.session.lab, "release", None)
        verdict_path(lesson, name).write_text(json.dumps({**res, "kernel": release}, indent=1) + "\n")
    return keep(res, f"verdict-{name}")
