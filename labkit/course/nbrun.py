"""Execute lesson notebooks top to bottom (nbclient), live or in replay.

    python -m labkit.course.nbrun --mode replay notebooks/*.ipynb [--out DIR]

Prints one line per notebook (time, error outputs, exercise checks) and a
JSON summary with ``--json``; the exit status is 1 when any notebook had
an error output. The executed copies go to ``--out`` (the tests keep them
in artifacts/), so the committed notebooks stay without outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from labkit.course.outputs import reveals, scan


def execute(path, mode, *, timeout=600, out_dir=None) -> dict:
    """Run one notebook in a fresh kernel with $LABKIT_MODE=mode; what it showed."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("LABKIT_MODE")
    os.environ["LABKIT_MODE"] = mode
    t0 = time.monotonic()
    failure = None
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    except Exception as exc:  # noqa: BLE001 - a dead kernel or a timeout is a result too
        failure = f"{type(exc).__name__}: {str(exc)[-2000:]}"
    finally:
        if old is None:
            os.environ.pop("LABKIT_MODE", None)
        else:
            os.environ["LABKIT_MODE"] = old
    seconds = round(time.monotonic() - t0, 1)
    errors, checks, banner = scan((i, cell.get("outputs", [])) for i, cell in enumerate(nb.cells))
    if failure:
        errors.append({"cell": None, "ename": "execution", "evalue": failure, "traceback": ""})
    if out_dir:
        out = Path(out_dir) / mode / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
    shown = reveals((i, cell.get("outputs", [])) for i, cell in enumerate(nb.cells))
    return {"notebook": str(path), "mode": mode, "seconds": seconds, "errors": errors, "checks": checks,
            "reveals": shown, "replay_banner": banner}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m labkit.course.nbrun")
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--mode", choices=("live", "replay"), required=True)
    ap.add_argument("--out", help="keep the executed notebooks under OUT/MODE/")
    ap.add_argument("--json", action="store_true", help="print a JSON summary last")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    results = []
    for nb in args.notebooks:
        r = execute(nb, args.mode, timeout=args.timeout, out_dir=args.out)
        results.append(r)
        checks = ", ".join(f"{c['exercise']}:{c['passed']}" for c in r["checks"]) or "-"
        print(f"{args.mode:6} {r['seconds']:7.1f}s errors={len(r['errors'])} checks={checks} {nb}", flush=True)
        for e in r["errors"]:
            print(f"    cell {e['cell']}: {e['ename']}: {e['evalue']}", flush=True)
    total = sum(r["seconds"] for r in results)
    print(f"{len(results)} notebooks in {total:.1f}s ({args.mode})", flush=True)
    if args.json:
        print(json.dumps(results))
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
