"""The inlined lookup's own cost, in guest instructions: a bracket probe.

    .venv/bin/python benchmarks/lookup_probe.py

Boots a lab VM that counts instructions (``Lab(clock="icount")``) and runs
``python -m labkit.bench.probe`` in it (see that module for the method):
bpf_ktime_get_ns() brackets around nothing, around the argument set-up of a
bpf_skb_storage_get() with flags 0, and around that set-up and the lookup the
verifier inlines, on an skb whose element is kept in its block. Prints the
inlined sequence's hit path (lookup - setup) and the whole call site (lookup -
empty) in instructions, against the bound tests/host/test_cost_icount.py holds.
"""

import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from labkit import kernel  # noqa: E402
from labkit.bench.probe import SEQUENCE_BOUND, run_in  # noqa: E402
from labkit.errors import LabError  # noqa: E402
from labkit.vm.lab import Lab  # noqa: E402


def main():
    try:
        kdir = kernel.kernel_path()
        with Lab(kdir, clock="icount") as lab:
            p = run_in(lab)
    except LabError as exc:
        raise SystemExit(f"lookup_probe: {exc}") from None
    p["kernel_build"] = kernel.info(kdir)
    print(json.dumps(p, indent=1, sort_keys=True))
    print(f"\ninlined lookup, hit path: {p['sequence']} instructions (bound {SEQUENCE_BOUND}); "
          f"the whole call site with its argument set-up: {p['call_site']}; "
          f"kernel {p['kernel_build']['source']} ({p['kernel_build']['key']})")


if __name__ == "__main__":
    main()
