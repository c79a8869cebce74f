"""The lab VM: QEMU with the lab kernel, and everything about running it on this machine.

``lab``        ``Lab``: boot the kernel (or restore its warm snapshot), power it off; ``choose_accel``
``commands``   running argv as root in the guest (``Lab``'s part), ``Result``
``snapshot``   warm snapshots: which one fits this machine, and whether it is stale
``warmbuild``  making a warm snapshot (boot, load the warm Python, save through QEMU's monitor)
``restore``    which snapshot a VM restores (made first when needed), and QEMU's argv for it
``accel``      KVM or TCG: what the machine decides, and a probe boot's outcome remembered
``qemu``       QEMU's command line, the run folder and the clock (TCG, icount, KVM)
``channel``    the host's end of the control channel (JSON lines to the guest agent)
``guestenv``   what the guest is given: the host's Python, environment and folders
``persistent`` the lab VM that stays up (``labkit vm start|run|stop``)
``spare``      a VM restored ahead (a hub student's server starts one), taken by their first ``Lab()``
``cli``        the ``labkit vm`` subcommands
``slots``      a machine-wide cap on lab VMs (``$LABKIT_VM_SLOTS``): the client
``slotbroker`` the root-owned broker that keeps the cap (the hub runs it)
``cleanup``    ``labkit cleanup``: this user's leftovers and nothing else
``preflight``  what this machine can do (``labkit doctor``, the tests' skip reasons)
"""

from labkit import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "lab": "Lab choose_accel",
    "commands": "Result",
})
