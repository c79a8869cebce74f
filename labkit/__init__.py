"""labkit: build, boot and drive the skb storage lab.

The import is kept light; each subpackage loads when used. From the bottom up
(``lint-imports`` holds the arrows one way, ``pyproject.toml`` lists the layers):

- ``errors``, ``paths``, ``tools``, ``progress``: the base every part uses.
- ``labkit.kernel``: build the lab kernel (Debian linux-source-6.12 + the
  patches in ``kernel/``), find it in the cache, pack it, read its splats.
- ``labkit.guest``: what runs in the guest at the system level: the agent,
  the lab's network namespaces and cgroups.
- ``labkit.vm``: boot the kernel in QEMU and run commands as root inside
  (``from labkit.vm import Lab``); the persistent VM, the machine-wide cap, cleanup,
  and what this machine can do (``preflight``).
- ``labkit.bpf``: compile the programs in ``bpf/`` and, inside the VM, load and
  attach them through libbpf, with the verifier's log explained.
- ``labkit.runtime``: scenarios as data, their topology and traffic, the observer,
  the event log, and a session that runs them in a lab VM.
- ``labkit.scenarios``, ``labkit.viz``, ``labkit.bench``: the scenario library, the
  pictures of a run, and what per-packet data costs.
- ``labkit.course``: what the lessons use: the lesson, predictions, facts,
  exercises and their checks, the notebook cells, the runner.
- ``labkit.hub``, ``labkit.lite``: a workshop's JupyterHub and the static site;
  ``cli``, ``demo`` and ``testrun`` on top.
"""

__version__ = "0.1.0"

from labkit.errors import LabError  # noqa: E402,F401


def exports(package: str, names: dict):
    """A subpackage's public names, each imported from its module when first used (PEP 562):
    ``from labkit.vm import Lab`` works without ``import labkit.vm`` loading every module of the
    package (``labkit.runtime.events`` must import in a browser, where ``runtime.topology`` cannot).

    names: {module: "Name Other"}, the modules relative to package. Returns ``__getattr__``,
    ``__dir__`` and ``__all__`` for the package's ``__init__``."""
    import importlib

    where = {name: module for module, listed in names.items() for name in listed.split()}

    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__, sorted(where)
