"""What an executed lesson showed, read from its cells' outputs: the errors (tracebacks and the
lab's error boxes), the exercise checks' verdicts, the replay banner, and the prediction reveals.
The notebook runner (``labkit.course.nbrun``), a learner's session (``labkit.course.nbsession``)
and the hub's drive read runs with these."""

from __future__ import annotations


def scan(cells) -> tuple[list, list, bool]:
    """What a run showed, from (cell index, outputs) pairs: the errors (tracebacks
    and the lab's error boxes, each saying whether it was an interrupt), the
    exercise checks' verdicts, and whether the replay banner was shown."""
    errors, checks, banner = [], [], False
    for i, outputs in cells:
        for o in outputs:
            if o.get("output_type") == "error":
                errors.append({"cell": i, "ename": o.get("ename"), "evalue": o.get("evalue"),
                               "traceback": "\n".join(o.get("traceback", []))[-3000:],
                               "interrupted": o.get("ename") == "KeyboardInterrupt"})
            box = (o.get("metadata") or {}).get("labkit_error")
            if box:  # a lab error shown as a box (labkit.course.errbox): the cell failed all the same
                errors.append({"cell": i, "ename": box.get("ename"), "evalue": box.get("message"),
                               "traceback": f"fix: {box.get('fix')}\n{box.get('details', '')}"[-3000:],
                               "interrupted": bool(box.get("interrupted"))})
            page = (o.get("data") or {}).get("text/html", "")
            if "labkit-banner" in page and "REPLAY" in page:
                banner = True
            check = (o.get("metadata") or {}).get("labkit_check")
            if check:
                checks.append(check)
    return errors, checks, banner


def reveals(cells) -> list:
    """The prediction reveals the outputs show: their ``labkit_reveal`` metadata and the text shown."""
    out = []
    for i, outputs in cells:
        for o in outputs:
            meta = (o.get("metadata") or {}).get("labkit_reveal")
            if meta:
                out.append({"cell": i, **meta, "html": (o.get("data") or {}).get("text/html", "")})
    return out
