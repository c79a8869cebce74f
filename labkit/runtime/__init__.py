"""Scenarios and their run: what the lab does to packets, and what the kernel did to them.

``parts``     what a scenario is made of, as data (``Veth``, ``Tunnel``, ``Hook``, ``Packet``, ...)
``scenario``  ``Scenario``: topology, hooks, packets and the expected path, as plain data
``topology``  a scenario's namespaces, links and tunnels built with pyroute2, and removed
``traffic``   test packets built with scapy and sent from inside a namespace
``packets``   small test packets built by hand (no scapy)
``records``   what the lab's BPF programs report (``bpf/include/lab_records.h``)
``symbols``   the running kernel's symbols and BTF: callers' names, which hooks exist
``observer``  the observer object and its lifecycle programs
``decode``    the observer's records as the log's events
``events``    ``EventLog``: what the kernel did to every skb of a run, saved as JSON lines
``run``       one scenario run in the guest: topology, programs, traffic, log
``worker``    the guest's long-lived scenario worker
``zygote``    a warm snapshot's warm Python: workers forked with their imports done
``session``   ``Session``: scenarios run from the host through one warm worker in a lab VM
``basic``     the first storage program end to end (``labkit demo``)
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "parts": "ScenarioError Topology Veth Tunnel Hook Packet",
    "scenario": "Scenario",
    "events": "EventLog",
    "session": "Session",
})
