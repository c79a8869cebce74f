"""Shared pieces: the two-namespace veth topology most scenarios start from."""

from labkit.runtime.parts import Topology, Veth

A_ADDR, B_ADDR = "10.0.0.1/24", "10.0.0.2/24"
A_IP, B_IP = "10.0.0.1", "10.0.0.2"


def pair(**extra) -> Topology:
    """lk-a and lk-b joined by a veth pair lk-a0 <-> lk-b0 (10.0.0.1 <-> 10.0.0.2)."""
    veths = (Veth("a", "lk-a0", "b", "lk-b0", A_ADDR, B_ADDR),) + tuple(extra.pop("veths", ()))
    return Topology(netns=("a", "b"), veths=veths, **extra)
