"""Small test packets built by hand: Ethernet/IPv4/UDP with the lab token.

The lab's BPF programs look for ``LAB_MAGIC`` and a 32-bit token at the
start of a UDP payload (``bpf/include/lab_records.h``). These helpers make
such payloads and whole frames (for BPF_PROG_TEST_RUN and AF_PACKET),
without scapy, so they run fast in the guest.
"""

import socket
import struct

from labkit.runtime.records import LAB_MAGIC


def payload(token: int, size: int = 32) -> bytes:
    body = struct.pack("!II", LAB_MAGIC, token)
    return body + bytes(max(0, size - len(body)))


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, data: bytes, ttl=64) -> bytes:
    udp_len = 8 + len(data)
    total = 20 + udp_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0x4000, ttl, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0)  # checksum 0: none, valid for IPv4
    return ip + udp + data


def ether(dst_mac: bytes, src_mac: bytes, l3: bytes, ethertype=0x0800) -> bytes:
    return dst_mac + src_mac + struct.pack("!H", ethertype) + l3


def mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def udp_frame(token: int, *, src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=40001,
              src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02", size=32) -> bytes:
    """A whole Ethernet frame carrying token, as a tc program sees it at offset 0."""
    return ether(mac(dst_mac), mac(src_mac), ipv4_udp(src, dst, sport, dport, payload(token, size)))
