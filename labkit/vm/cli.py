"""The ``labkit vm`` subcommands (registered by labkit.cli).

    labkit vm run [--timeout S] -- CMD ...   run CMD as root in the lab VM, in this directory
    labkit vm start|stop|status              keep one lab VM running for `vm run` to reuse
    labkit vm snapshot [--cpus N] [--memory M]   make (or find fresh) the warm snapshot lab VMs restore
"""

import argparse

from labkit.errors import LabError


def add_commands(sub):
    v = sub.add_parser("vm", help="the lab VM").add_subparsers()
    vr = v.add_parser("run", help="run a command as root in the lab VM")
    vr.add_argument("--timeout", type=float, default=600.0, help="seconds before the VM is stopped (default 600)")
    vr.add_argument("cmd", nargs=argparse.REMAINDER)
    vr.set_defaults(func=cmd_vm_run)
    v.add_parser("start", help="boot a lab VM that stays up").set_defaults(func=cmd_vm_start)
    v.add_parser("stop", help="stop the lab VM that stays up").set_defaults(func=cmd_vm_stop)
    v.add_parser("status", help="is a lab VM up").set_defaults(func=cmd_vm_status)
    vs = v.add_parser("snapshot", help="make (or find fresh) the warm snapshot lab VMs restore")
    vs.add_argument("--cpus", type=int, default=2, help="the VMs' vCPUs (default 2, as Lab())")
    vs.add_argument("--memory", default="1G", help="the VMs' memory (default 1G, as Lab())")
    vs.set_defaults(func=cmd_vm_snapshot)


def cmd_vm_run(args):
    from labkit.vm import persistent

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise LabError("no command given", fix="usage: labkit vm run -- CMD [ARGS...]")
    from labkit import paths

    if paths.in_guest():
        raise LabError("this is already the lab VM", fix=f"run the command directly: {' '.join(cmd)}")
    with persistent.persistent_lock():
        lab, reused = persistent.open_lab()
        if not reused:
            lab.start()
        try:
            res = lab.run(cmd, timeout=args.timeout, stream=True)
        finally:
            if reused:
                if lab.chan:
                    lab.chan.close()
            else:
                lab.close()
    return res.code


def cmd_vm_start(args):
    from labkit.vm import persistent

    with persistent.persistent_lock():
        state = persistent.start_persistent()
    print(f"lab VM up: pid {state['pid']}, kernel {state['release']}, accel {state['accel']} "
          f"({state.get('accel_why') or 'reused'}); stop it with: labkit vm stop")


def cmd_vm_stop(args):
    from labkit.vm import persistent

    print("lab VM stopped" if persistent.stop_persistent() else "no lab VM was running")


def cmd_vm_status(args):
    from labkit.vm import persistent

    state = persistent.persistent_state()
    if state:
        print(f"running: pid {state['pid']}, kernel {state['release']}, accel {state['accel']}")
        return 0
    print("no lab VM running")
    return 1


def cmd_vm_snapshot(args):
    from labkit import kernel
    from labkit.vm.lab import default_snapshot

    found, why = default_snapshot(kernel.kernel_path(), cpus=args.cpus, memory=args.memory)
    if found is None:
        raise LabError(f"no warm snapshot: {why}", fix="check `labkit doctor`; lab VMs boot cold meanwhile")
    print(f"warm snapshot ready: {found.summary()}")
