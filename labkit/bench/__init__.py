"""What per-packet data costs: every storage design timed, or counted in guest instructions.

``designs``  which programs make each design, what each is compared with, the figures of a run
``storage``  the benchmark itself (``Bench``), run as root in the guest
``run``      a run in the lab VM, started and ended from the host (``python -m labkit.bench.run``)
``probe``    the inlined lookup's own cost, counted by a bracket probe
``plot``     the results as a chart and tables, with the bounds
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "run": "run_in_vm",
    "designs": "DESIGNS BenchError plan summarise",
    "storage": "Bench",
})
