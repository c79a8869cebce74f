"""Verifier errors: what a rejected load's verifier log says, as a ``VerifierError``
whose headline names the program and the verifier's complaint and whose details
hold the last verifier lines with the C source line each belongs to (from BTF
line info): ``load_error()``."""

import os
import re

from labkit.bpf.ffi import printed_lines
from labkit.errors import LabError, VerifierError

SRC_RE = re.compile(r"^; (.*?)(?: @ (\S+):(\d+))?$")


def explain_log(log: str, keep=12):
    """(headline, relevant lines) from a verifier log.

    The headline is the verifier's last complaint; the relevant lines are
    the last instructions before it, each preceded by the C source line
    (``file:line: code``) that BTF line info attaches to them.
    """
    lines = [ln for ln in log.splitlines() if ln.strip()]
    if not lines:
        return "no verifier log", []
    # The complaint: last line that is not a stats/summary line.
    tail = [ln for ln in lines if not ln.startswith(("processed ", "verification time", "stack depth",
                                                        "-- END PROG LOAD LOG --"))]
    headline = tail[-1] if tail else lines[-1]
    relevant, src_seen = [], None
    for ln in tail[-keep:]:
        m = SRC_RE.match(ln)
        if m and m.group(2):
            src_seen = f"{os.path.basename(m.group(2))}:{m.group(3)}: {m.group(1).strip()}"
            relevant.append(src_seen)
        else:
            relevant.append("    " + ln)
    if src_seen is None:
        # Find the nearest source annotation above the window.
        for ln in reversed(tail[:-keep]):
            m = SRC_RE.match(ln)
            if m and m.group(2):
                relevant.insert(0, f"{os.path.basename(m.group(2))}:{m.group(3)}: {m.group(1).strip()}")
                break
    return headline, relevant


def load_error(obj, rc) -> LabError:
    """Why obj (a ``BpfObject``) failed to load with rc: a ``VerifierError`` from its verifier log, or
    libbpf's own messages when the verifier said nothing."""
    failed = None
    for name, buf in obj._logs.items():
        if buf.value:
            failed = name
    log = obj.log(failed) if failed else ""
    libbpf_lines = [ln.rstrip() for ln in printed_lines if ln.strip()]
    if not log:
        msg = next((ln for ln in reversed(libbpf_lines) if "libbpf:" in ln), f"load failed: {os.strerror(abs(rc))}")
        return LabError(f"{os.path.basename(obj.path)}: {msg.strip()}", fix="see the libbpf messages below",
                        details="\n".join(libbpf_lines[-15:]))
    headline, relevant = explain_log(log)
    src = next((r for r in reversed(relevant) if not r.startswith("    ")), None)
    where = f" at {src.split(': ', 1)[0]}" if src else ""
    err = VerifierError(
        f"the verifier rejected {failed} ({os.path.basename(obj.path)}){where}: {headline.strip()}",
        fix="fix the C line shown; the verifier's own lines follow",
        details="\n".join(relevant),
    )
    err.program = failed
    err.log = log
    err.errno = abs(rc)
    return err

