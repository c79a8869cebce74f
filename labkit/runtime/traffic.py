"""Test packets, built with scapy, sent from inside a namespace.

Every test packet carries ``LAB_MAGIC`` and a 32-bit token at the start of
its payload: the observer finds it there (``bpf/include/lab_observe.h``),
and the token is the packet's id in the event log, shared by its clones.

Build where Python is fast: ``import scapy`` takes seconds under TCG, so
the host builds the bytes and the guest only writes them to a raw socket
created inside the source namespace (a socket keeps the namespace it was
made in).
"""

from __future__ import annotations

import secrets
import socket
import struct

from labkit.runtime.records import LAB_MAGIC


def new_token() -> int:
    """A fresh random token: a hard-coded answer cannot pass."""
    return secrets.randbits(30) | 0x40000000


def payload(token: int, size: int) -> bytes:
    body = struct.pack("!II", LAB_MAGIC, token)
    return body + bytes(max(0, size - len(body)))


def build(proto: str, src: str, dst: str, token: int, *, size: int = 32, port: int = 7000) -> bytes:
    """One IPv4 packet (from the IP header on) carrying token."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP  # slow to import: only when building
    from scapy.packet import Raw

    ip = IP(src=src, dst=dst, ttl=64)
    data = Raw(payload(token, size))
    if proto == "udp":
        pkt = ip / UDP(sport=40000 + token % 20000, dport=port) / data
    elif proto == "tcp":
        pkt = ip / TCP(sport=40000 + token % 20000, dport=port, flags="S", seq=token) / data
    elif proto == "icmp":
        pkt = ip / ICMP(type=8, id=token & 0xFFFF, seq=1) / data
    else:
        raise ValueError(f"unknown protocol {proto!r}: use udp, tcp or icmp")
    return bytes(pkt)


def token_of(packet: bytes) -> int | None:
    """The token in an IPv4 test packet built by build(), or None."""
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    off = ihl + {17: 8, 6: 20, 1: 8}.get(proto, 0)
    if proto == 6:
        off = ihl + (packet[ihl + 12] >> 4) * 4
    magic, token = struct.unpack_from("!II", packet, off)
    return token if magic == LAB_MAGIC else None


def raw_sender(netns: str | None) -> socket.socket:
    """A raw IPv4 socket (IP_HDRINCL) in the namespace netns (None: here)."""
    if netns is None:
        return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    from pyroute2 import netns as prnetns

    return prnetns.create_socket(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW, flags=0)


def ether(dst_mac: str, src_mac: str, packet: bytes) -> bytes:
    """An Ethernet frame around an IPv4 packet."""
    return bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00" + packet


def send(sock: socket.socket, packet: bytes) -> None:
    dst = socket.inet_ntoa(packet[16:20])
    sock.sendto(packet, (dst, 0))
