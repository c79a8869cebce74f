"""labkit: build, boot and drive the skb storage lab.

The import is kept light; the pieces load when used:

- ``labkit.kernel``: build the lab kernel (Debian linux-source-6.12 + the
  patches in ``kernel/``) and find it again from the cache.
- ``labkit.vm``: boot it in QEMU and run commands as root inside
  (``Lab`` is the context manager most code wants).
- ``labkit.bpf``: compile the programs in ``bpf/`` and, inside the VM,
  load and attach them through libbpf.
- ``labkit.preflight``: what this machine can do, for ``labkit doctor``,
  the tests' skip reasons and the notebooks' first cell.
"""

__version__ = "0.1.0"

from labkit.errors import LabError  # noqa: E402,F401


def __getattr__(name):
    if name == "Lab":
        from labkit.vm import Lab

        return Lab
    raise AttributeError(name)
