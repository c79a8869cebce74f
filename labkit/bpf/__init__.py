"""BPF programs: compiled on the host, loaded and attached in the lab VM through libbpf.

``build``     compile ``bpf/*.bpf.c`` against the lab kernel's ``vmlinux.h`` (``obj_path``)
``ffi``       libbpf's C API through ctypes
``libbpf``    ``BpfObject``: open, load (the verifier's say), maps, programs, attach
``attach``    attachments that remove what they created: links, tc filters, ring buffer readers
``verifier``  a refused program's verifier log, explained next to the C source line
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "build": "obj_path",
    "libbpf": "BpfObject Map Program",
    "attach": "Link RingBuffer TcFilter",
})
